"""Backends turn a prompt into a token stream. `open_backend()` builds the one a ModelSpec names,
from the table in registry.py."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from falconchat.backends.registry import BACKENDS

if TYPE_CHECKING:
    from falconchat.backends.base import Backend
    from falconchat.config import ModelSpec


def open_backend(spec: ModelSpec, sequences: int = 1) -> Backend:
    """`sequences` > 1: a local model decodes that many requests together (callers may then
    share the backend between threads); other backends take one client per thread."""
    kind = BACKENDS[spec.backend]
    module_name, _, class_name = kind.factory.partition(":")  # a class, or a function
    backend_class = getattr(importlib.import_module(module_name), class_name)
    if kind.resolves:  # "auto": the probe names the backend to open (probe.py needs nothing of this module)
        return open_backend(backend_class(spec), sequences)
    if spec.backend == "local":
        return backend_class(spec, sequences=sequences)
    return backend_class(spec)

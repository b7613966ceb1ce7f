"""Backends turn a prompt into a token stream. `open_backend()` builds the one a ModelSpec names,
from the table in registry.py; `open_in_process()` one that `serve` and `bench` decode with."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast

from falconchat.backends.failover import FailoverBackend
from falconchat.backends.registry import BACKENDS, BackendKind, servable
from falconchat.errors import UsageError

if TYPE_CHECKING:
    from falconchat.backends.base import Backend, InProcessModel
    from falconchat.config_models import ModelSpec


def open_backend(spec: ModelSpec, sequences: int = 1) -> Backend:
    """`sequences` > 1: a backend whose registry row decodes several prompts together takes
    that many (callers may then share it between threads); others take one client per thread."""
    if spec.replicas:  # `endpoints = [...]`: one replica at a time, the next when it fails
        return FailoverBackend(spec, open_backend)
    kind = BACKENDS[spec.backend]
    if kind.resolves:  # "auto": the probe names the backend to open (probe.py needs nothing of this module)
        return open_backend(_factory(kind)(spec), sequences)
    if (kind.sequences or 1) > 1:
        return cast("Backend", _factory(kind)(spec, sequences=sequences))
    return cast("Backend", _factory(kind)(spec))


def open_in_process(spec: ModelSpec, sequences: int = 1) -> InProcessModel:
    """A model decoded here token by token (`serve`, `bench`): a UsageError for any other backend."""
    kind = BACKENDS[spec.backend]
    if not kind.serves:
        backends = " or ".join(f'backend = "{name}"' for name in servable())
        raise UsageError(f"serve runs a model in process ({backends}); {spec.name!r} is a {spec.backend} model")
    # backends/conformance.py has mypy check that the class in each `serves` row is an InProcessModel.
    return cast("InProcessModel", _factory(kind)(spec, sequences=sequences))


def _factory(kind: BackendKind) -> Any:
    module_name, _, name = kind.factory.partition(":")  # a class, or a function
    return getattr(importlib.import_module(module_name), name)

"""Backends turn a prompt into a token stream. `open_backend()` picks one for a ModelSpec."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from falconchat.backends.base import Backend
    from falconchat.config import ModelSpec


def open_backend(spec: "ModelSpec", sequences: int = 1) -> "Backend":
    """`sequences` > 1: a local model decodes that many requests together (callers may then
    share the backend between threads); other backends take one client per thread."""
    if spec.backend == "tgi":
        from falconchat.backends.tgi import TgiBackend

        return TgiBackend(spec)
    if spec.backend == "openai":
        from falconchat.backends.openai import OpenAIBackend

        return OpenAIBackend(spec)
    if spec.backend == "transformers":
        from falconchat.backends.transformers import TransformersBackend

        return TransformersBackend(spec)
    from falconchat.backends.local import LocalBackend

    return LocalBackend(spec, sequences=sequences)

"""The registry's factories, typed. registry.py names them as "module:Class" strings (so config
can read it without loading any backend), which mypy cannot follow; here mypy checks that each
satisfies the protocol its row promises, and tests/backends/test_registry.py that this table
and the registry name the same things. Nothing imports it at run time."""

from __future__ import annotations

from collections.abc import Callable

from falconchat.backends.base import Backend, OpensInProcess
from falconchat.backends.local import LocalBackend
from falconchat.backends.openai import OpenAIBackend
from falconchat.backends.probe import resolve
from falconchat.backends.scripted import ScriptedBackend
from falconchat.backends.tgi import TgiBackend
from falconchat.backends.transformers import TransformersBackend
from falconchat.config_models import ModelSpec

# Every row but those that say `resolves`: built from a ModelSpec, a Backend.
FACTORIES: dict[str, Callable[[ModelSpec], Backend]] = {
    "local": LocalBackend,
    "transformers": TransformersBackend,
    "tgi": TgiBackend,
    "openai": OpenAIBackend,
    "scripted": ScriptedBackend,
}

# The rows that say `resolves`: from a ModelSpec, the ModelSpec of another row, opened instead.
RESOLVERS: dict[str, Callable[[ModelSpec], ModelSpec]] = {
    "auto": resolve,
}

# The rows that say `serves`: they take `sequences=` and are InProcessModels (serve, bench).
IN_PROCESS: dict[str, OpensInProcess] = {
    "local": LocalBackend,
}

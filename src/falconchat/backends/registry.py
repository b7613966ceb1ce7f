"""The backends falconchat knows: one table that config (to check a model entry),
`open_backend` (to build one), `batch` (how many prompts at once) and `serve` (what it can
run) all read. It imports nothing of ours, so config may read it without loading any backend.

A new backend is one row here and its class's row in backends/conformance.py (where mypy
checks that the class offers what its row promises)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class BackendKind:
    formats: tuple[str, ...]  # prompt formats it accepts; the first is the default
    in_process: bool  # runs a model file here (True) or talks to an endpoint (False)
    factory: str  # "module:Class", imported only when such a backend is opened
    # The factory does not build a backend: it returns the ModelSpec of another entry, which is
    # opened instead ("auto": the probe says tgi or openai).
    resolves: bool = False
    # How many prompts one backend object is worth decoding together (more cost memory and
    # are no faster): `batch -j` is capped here. Over 1: its constructor takes `sequences=`
    # and callers share it between threads; None: an endpoint, one client per worker thread.
    sequences: int | None = None
    serves: bool = False  # an `InProcessModel` (backends/base.py): `serve` can run it
    scripted: bool = False  # answers with the `replies = [...]` of its entry: a model for tests

    def default_sequences(self) -> int:
        """How many to decode together when not asked: on a 2-core machine one step for 8
        costs ~4.6x one for 1, so 8 together come out ~1.7x faster than one by one."""
        return min(self.sequences or 1, 4 * (os.cpu_count() or 1))


BACKENDS: dict[str, BackendKind] = {
    # "auto": the model's own chat template when it carries one ("native"), else "falcon" (known once loaded).
    # At most 16: on 2 cores 16 decode no faster than 8, and each holds its own KV cache.
    "local": BackendKind(
        ("auto", "falcon", "native"), True, "falconchat.backends.local:LocalBackend", sequences=16, serves=True
    ),
    "transformers": BackendKind(
        ("auto", "falcon", "native"), True, "falconchat.backends.transformers:TransformersBackend", sequences=1
    ),
    "tgi": BackendKind(("falcon",), False, "falconchat.backends.tgi:TgiBackend"),
    "openai": BackendKind(("chat", "falcon"), False, "falconchat.backends.openai:OpenAIBackend"),
    # An endpoint whose API is not said: probed when opened (GET /info, GET /v1/models), then tgi or openai.
    "auto": BackendKind(("auto", "chat", "falcon"), False, "falconchat.backends.probe:resolve", resolves=True),
    # For tests (the library's ScriptedModel): replies given in advance, every prompt recorded.
    "scripted": BackendKind(("chat", "falcon"), False, "falconchat.backends.scripted:ScriptedBackend", scripted=True),
}


def servable() -> list[str]:
    """The backends `serve` can run, by name."""
    return [name for name, kind in BACKENDS.items() if kind.serves]


# How the REPL's banner and /show name a format in use (resolved: never "auto").
FORMAT_SHOWN = {
    "falcon": "falcon",
    "native": "native (the model's chat template)",
    "chat": "chat (the server's chat template)",
}

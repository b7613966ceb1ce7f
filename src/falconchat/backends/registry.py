"""The backends falconchat knows: one table that config (to check a model entry) and
`open_backend` (to build one) both read. It imports nothing, so config may read it
without loading any backend."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendKind:
    formats: tuple[str, ...]  # prompt formats it accepts; the first is the default
    in_process: bool  # runs a model file here (True) or talks to an endpoint (False)
    factory: str  # "module:Class", imported only when such a backend is opened
    # The factory does not build a backend: it returns the ModelSpec of another entry, which is
    # opened instead ("auto": the probe says tgi or openai).
    resolves: bool = False


BACKENDS: dict[str, BackendKind] = {
    # "auto": the model's own chat template when it carries one ("native"), else "falcon" (known once loaded).
    "local": BackendKind(("auto", "falcon", "native"), True, "falconchat.backends.local:LocalBackend"),
    "transformers": BackendKind(
        ("auto", "falcon", "native"), True, "falconchat.backends.transformers:TransformersBackend"
    ),
    "tgi": BackendKind(("falcon",), False, "falconchat.backends.tgi:TgiBackend"),
    "openai": BackendKind(("chat", "falcon"), False, "falconchat.backends.openai:OpenAIBackend"),
    # An endpoint whose API is not said: probed when opened (GET /info, GET /v1/models), then tgi or openai.
    "auto": BackendKind(("auto", "chat", "falcon"), False, "falconchat.backends.probe:resolve", resolves=True),
}


# How the REPL's banner and /show name a format in use (resolved: never "auto").
FORMAT_SHOWN = {
    "falcon": "falcon",
    "native": "native (the model's chat template)",
    "chat": "chat (the server's chat template)",
}

"""`--endpoint URL` alone: ask the server once which API it speaks, and what it serves.

`GET /info` answers on text-generation-inference (and `falconchat serve`); `GET /v1/models`
on every OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, Ollama, LM Studio).
The answer picks the backend, the model name and, where the server says, the context
length. It runs when a backend is opened — never at import, never on the REPL's event
loop — with the same timeouts and error messages as a request to that endpoint.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass, replace

from falconchat.backends.tgi import TgiBackend, _by_status
from falconchat.config_models import ModelSpec
from falconchat.errors import ConfigError, UsageError
from falconchat.text import safe_url, sanitize

MAX_BODY = 1 << 20  # a model list is small; never read a whole unexpected page


@dataclass(frozen=True)
class ServedModel:
    name: str
    context_length: int | None = None
    owner: str | None = None  # "vllm", "llamacpp", "me" (llama-cpp-python), "library" (Ollama)…


@dataclass(frozen=True)
class Probed:
    api: str  # "tgi" or "openai"
    endpoint: str  # the base URL that API's backend takes
    models: tuple[ServedModel, ...]
    server: str | None = None  # what answered, where it says: "vllm", "llama-cpp-python", "tgi"


def roots(url: str) -> tuple[str, str]:
    """(the server's root, the OpenAI API's base) for a URL given with or without /v1."""
    base = url.rstrip("/")
    root = base[: -len("/v1")] if base.endswith("/v1") else base
    return root, root + "/v1"


def probe(spec: ModelSpec) -> Probed:
    """One look at the server; an unreachable one raises the error a request would."""

    root, openai_base = roots(spec.endpoint or "")
    http = TgiBackend(spec)  # its requests: the same timeouts, auth header and one-line errors
    try:
        info = _get_json(http, root + "/info")
        if isinstance(info, dict) and isinstance(info.get("model_id"), str):
            total = info.get("max_total_tokens")
            model = ServedModel(info["model_id"], total if isinstance(total, int) and total > 0 else None)
            return Probed("tgi", root, (model,), "tgi")
        listing = _get_json(http, openai_base + "/models")
        if isinstance(listing, dict) and isinstance(listing.get("data"), list):
            models = tuple(m for m in (_served(entry) for entry in listing["data"]) if m is not None)
            return Probed("openai", openai_base, models, _server_of(models))
    finally:
        http.close()
    # Neither route says: a proxied TGI endpoint (the classic tutorial's) is the old default.
    return Probed("tgi", spec.endpoint or root, (), None)


def resolve(spec: ModelSpec) -> ModelSpec:
    """An "auto" spec becomes a tgi or openai one; any other is returned as it is."""
    if spec.backend != "auto":
        return spec
    found = probe(spec)
    model = _choose(found, spec.remote_model, spec.endpoint or "")
    changes: dict = {"backend": found.api, "endpoint": found.endpoint, "server": found.server}
    if spec.format == "auto":
        changes["format"] = "chat" if found.api == "openai" else "falcon"
    elif found.api == "tgi" and spec.format != "falcon":
        raise ConfigError(f'{_shown(spec)} speaks TGI\'s generate API, which takes format = "falcon"')
    if model is not None:
        changes["remote_model"] = model.name
        if spec.name in ("endpoint", "tgi"):  # no name of the user's own: the server's
            changes["name"] = sanitize(model.name)
        if spec.context_length is None and model.context_length:
            changes["context_length"] = model.context_length
    return replace(spec, **changes)


def served_models(spec: ModelSpec) -> Probed:
    """`falconchat models --endpoint URL`."""
    return probe(replace(spec, backend="auto"))


def _choose(found: Probed, wanted: str | None, url: str) -> ServedModel | None:
    names = [m.name for m in found.models]
    if not found.models:
        return None
    if wanted is None:
        if len(found.models) == 1:
            return found.models[0]
        raise UsageError(f"{_safe(url)} serves {len(names)} models; choose one with -m NAME: {_listed(names)}")
    for model in found.models:
        if model.name == wanted:
            return model
    if found.api == "tgi":
        return found.models[0]  # TGI serves one model, whatever a request names
    raise ConfigError(f"{_safe(url)} has no model {sanitize(wanted)!r}; it has: {_listed(names)}")


def _get_json(http, url: str):
    response = http._request("GET", url, headers=http._headers() | {"Accept": "application/json"})
    with closing(response):
        if response.status_code in (401, 403):
            raise _by_status(response.status_code, "while asking which API it speaks", http.shown_url)
        if response.status_code != 200:
            return None
        try:
            return json.loads(response.raw.read(MAX_BODY, decode_content=True))
        except (ValueError, UnicodeDecodeError):
            return None


def _served(entry) -> ServedModel | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
        return None
    meta = entry.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    context = None
    # vLLM: max_model_len; LM Studio: max_context_length; llama.cpp's server: meta.n_ctx_train.
    for value in (entry.get("max_model_len"), entry.get("max_context_length"), meta.get("n_ctx_train")):
        if isinstance(value, int) and value > 0:
            context = value
            break
    owner = entry.get("owned_by") if isinstance(entry.get("owned_by"), str) else None
    return ServedModel(entry["id"], context, owner)


def _server_of(models: tuple[ServedModel, ...]) -> str | None:
    owners = {m.owner for m in models}
    if "vllm" in owners:
        return "vllm"
    if "me" in owners:  # llama-cpp-python's server says so
        return "llama-cpp-python"
    if "llamacpp" in owners:
        return "llama.cpp"
    return None


def _listed(names: list[str]) -> str:
    shown = ", ".join(sanitize(n) for n in names[:20])
    return shown + (f" … and {len(names) - 20} more" if len(names) > 20 else "")


def _safe(url: str) -> str:
    return safe_url(url)


def _shown(spec: ModelSpec) -> str:
    return _safe(spec.endpoint or "")

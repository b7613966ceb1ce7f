"""Named models: what a model is (`ModelSpec`), and a config file's `[models.NAME]` table read
into one, every wrong field one `ConfigError` line that names the entry and what is allowed.

`config.load_settings()` calls it; which named model a command uses is decided there."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from falconchat.backends.registry import BACKENDS
from falconchat.config_values import DEFAULT_TIMEOUT_S, parse
from falconchat.errors import ConfigError
from falconchat.types import Script


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str  # "local" | "transformers" | "tgi" | "openai" | "auto" (probed when opened)
    model_path: str | None = (
        None  # local: a GGUF file; transformers: a model directory or GGUF; None: the bundled model
    )
    context_length: int | None = None
    threads: int | None = None
    endpoint: str | None = None  # tgi, openai: the base URL
    api_key: str | None = field(default=None, repr=False)
    auth_scheme: str = "Bearer"
    timeout: float = DEFAULT_TIMEOUT_S
    remote_model: str | None = None  # openai: the server's name for the model
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # openai: extra HTTP headers
    # "falcon" (our prompt); "chat" (openai's chat API); "native" (local: the model's template);
    # "auto": local, the model's template if it carries one, else falcon (the backend decides when it loads
    # the model); endpoints, what the probe finds.
    format: str = "falcon"
    device: str | None = None  # transformers: "auto" (a GPU when there is one), "cpu", "cuda" or "cuda:N"
    server: str | None = None  # endpoints: the software the probe found ("vllm", "llama-cpp-python", "tgi")
    replicas: tuple[str, ...] = ()  # `endpoints = [...]`: several URLs of one model (batch uses them all)
    # endpoints: how often the client itself asks again before a reply starts (refused, 429, 5xx);
    # None: the backend's default. 0 for batch's replicas: the pool moves the request at once.
    retries: int | None = None
    thinking: bool | None = None  # format = "native": the template's enable_thinking (None: its default)
    reasoning_effort: str | None = None  # format = "native": gpt-oss's "low" | "medium" | "high"
    # scripted: its replies and the prompts it was sent (a mutable part, shared with the test that wrote it)
    script: Script | None = field(default=None, repr=False, compare=False)


MODEL_FIELDS = {
    "backend",
    "endpoint",
    "url",
    "base_url",  # the name OpenAI's clients give it
    "endpoints",  # replicas of one model: batch spreads its requests over them
    "model_path",
    "context_length",
    "threads",
    "auth_scheme",
    "api_key_env",
    "timeout",
    "model",
    "headers",
    "format",
    "device",
    "thinking",
    "reasoning_effort",
    "replies",
}
FORMATS = {name: kind.formats for name, kind in BACKENDS.items()}
IN_PROCESS = tuple(name for name, kind in BACKENDS.items() if kind.in_process)  # run a model file here
# Where a chat template's switches (enable_thinking, reasoning_effort) reach it: in process, or
# an OpenAI-compatible server's (vLLM's and llama.cpp's chat_template_kwargs); "auto" may be one.
TAKES_THINKING = (*IN_PROCESS, "openai", "auto")
SCRIPTED = tuple(name for name, kind in BACKENDS.items() if kind.scripted)  # replies written in the entry


def local_defaults(defaults: dict[str, Any]) -> dict[str, Any]:
    """The bundled model's settings, and any GGUF file's named by path or hf: name."""
    keys = ("context_length", "threads", "thinking", "reasoning_effort")
    return {"format": FORMATS["local"][0], **{key: defaults[key] for key in keys}}


def _entry_urls(where: str, entry: Any) -> list[str]:
    """Which of the fields that name an endpoint's URL a `[models.NAME]` table has (one at most),
    once it is known to be a table of known fields."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} in the config file must be a table")
    unknown = set(entry) - MODEL_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(MODEL_FIELDS))}")
    urls = [key for key in ("endpoint", "url", "base_url", "endpoints") if key in entry]
    if len(urls) > 1:
        raise ConfigError(f"{where}: {' and '.join(urls)} name the same thing; keep one")
    return urls


def _replicas(urls: Any, where: str) -> tuple[str, ...]:
    """`endpoints = ["http://gpu1:8000", …]`: each URL checked as `endpoint` is."""
    if not isinstance(urls, list) or not urls or not all(isinstance(url, str) for url in urls):
        raise ConfigError(
            f'{where}: endpoints must be a list of URLs, such as ["http://gpu1:8000", "http://gpu2:8000"]'
        )
    return tuple(parse("endpoint", url, f"{where} endpoints") for url in urls)


def model_from_toml(
    name: str, entry: Any, variable: Callable[[str], str | None], defaults: dict[str, Any]
) -> ModelSpec:
    """One `[models.NAME]` table; `variable` reads its api_key_env (the environment, then .env),
    `defaults` are the settings' values that its own fields override."""
    where = f"[models.{name}]"
    urls = _entry_urls(where, entry)
    backend = entry.get("backend", "auto" if urls else None)
    if backend not in FORMATS:
        raise ConfigError(f"{where}: backend must be one of {', '.join(FORMATS)}, not {backend!r}")
    form = entry.get("format", FORMATS[backend][0])
    if form not in FORMATS[backend]:
        raise ConfigError(
            f"{where}: format for a {backend} model must be one of {', '.join(FORMATS[backend])}, not {form!r}"
        )

    def field_value(key: str, setting: str | None = None):
        return parse(setting or key, entry[key], f"{where} {key}") if key in entry else None

    if backend in SCRIPTED or "replies" in entry:
        return _scripted(name, backend, form, entry, field_value("context_length") or defaults["context_length"])

    if "device" in entry and backend != "transformers":
        raise ConfigError(f"{where}: device is a setting of transformers models, not {backend} ones")
    for key in ("thinking", "reasoning_effort"):
        if key in entry and backend not in TAKES_THINKING:
            raise ConfigError(f'{where}: {key} is a setting of format = "native" and openai models, not {backend} ones')
    if backend in IN_PROCESS:
        return ModelSpec(
            name=name,
            backend=backend,
            model_path=field_value("model_path"),
            context_length=field_value("context_length") or defaults["context_length"],
            threads=field_value("threads") or defaults["threads"],
            format=form,
            device=_device(entry["device"], where) if "device" in entry else None,
            thinking=_first(field_value("thinking"), defaults["thinking"]),
            reasoning_effort=field_value("reasoning_effort") or defaults["reasoning_effort"],
        )
    replicas = _replicas(entry.get("endpoints"), where) if "endpoints" in entry else ()
    url = (
        field_value("endpoint")
        or field_value("url", "endpoint")
        or field_value("base_url", "endpoint")
        or (replicas[0] if replicas else None)
    )
    if not url:
        raise ConfigError(f'{where}: a {backend} model needs endpoint = "https://…"')
    key_var = entry.get("api_key_env")
    if key_var is not None and not isinstance(key_var, str):
        raise ConfigError(f"{where}: api_key_env must be the name of an environment variable")
    remote = entry.get("model")
    if remote is not None and (not isinstance(remote, str) or not remote):
        raise ConfigError(f"{where}: model must be the server's model name")
    headers = entry.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ConfigError(f"{where}: headers must be a table of strings")
    return ModelSpec(
        name=name,
        backend=backend,
        endpoint=url,
        context_length=field_value("context_length") or defaults["context_length"],
        api_key=variable(key_var) if key_var else defaults["api_key"],
        auth_scheme=field_value("auth_scheme") or defaults["auth_scheme"],
        timeout=field_value("timeout") or defaults["timeout"],
        remote_model=remote,
        headers=tuple(sorted(headers.items())),
        replicas=replicas if len(replicas) > 1 else (),
        format=form,
        thinking=_first(field_value("thinking"), defaults["thinking"]),
        reasoning_effort=field_value("reasoning_effort") or defaults["reasoning_effort"],
    )


def _scripted(name: str, backend: str, form: str, entry: dict[str, Any], context: int | None) -> ModelSpec:
    """A model for tests: it answers with the entry's `replies`, one per prompt in turn."""
    replies = entry.get("replies")
    if backend not in SCRIPTED or replies is None:
        raise ConfigError(f'[models.{name}]: replies = ["…"] and backend = "scripted" (a model for tests) go together')
    if not isinstance(replies, list) or not all(isinstance(reply, str) for reply in replies):
        raise ConfigError(f"[models.{name}]: replies must be a list of strings")
    return ModelSpec(name=name, backend=backend, format=form, context_length=context, script=Script(replies))


def _first(*values: Any) -> Any:
    """The first value that is not None (False is a value)."""
    return next((v for v in values if v is not None), None)


def _device(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", raw):
        raise ConfigError(f'{where}: device must be "auto", "cpu", "cuda" or "cuda:N", not {raw!r}')
    return raw

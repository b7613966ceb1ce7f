"""The JSON that `ask --json` and `batch` write: one shape for a reply, one for an error.

Both commands use the same field names (docs/ask-json.schema.json and
docs/batch-line.schema.json), so a script that reads one reads the other.
"""

from __future__ import annotations

from typing import Any

from falconchat.errors import ExitCode, FalconchatError
from falconchat.text import safe_url
from falconchat.types import Done, SamplingParams


def error_object(exc: BaseException) -> dict[str, Any]:
    """{kind, message, exit_code}: the same message and code the command reports on stderr."""
    if isinstance(exc, KeyboardInterrupt):
        return {"kind": "interrupted", "message": "interrupted", "exit_code": int(ExitCode.INTERRUPTED)}
    if isinstance(exc, FalconchatError):
        return {"kind": exc.kind, "message": exc.message, "exit_code": int(exc.exit_code)}
    return {"kind": "internal", "message": f"unexpected {type(exc).__name__}: {exc}", "exit_code": int(ExitCode.ERROR)}


def reply_fields(reply: str, done: Done | None) -> dict[str, Any]:
    """The reply and what its Done says; counts and timings are null when it never finished."""
    return {
        "reply": reply,
        "finish_reason": done.finish_reason if done else None,
        "prompt_tokens": done.prompt_tokens if done else None,
        "completion_tokens": done.completion_tokens if done else None,
        "first_token_s": _seconds(done.first_token_s) if done else None,
        "duration_s": _seconds(done.total_s) if done else None,
    }


def settings_object(system: str, params: SamplingParams) -> dict[str, Any]:
    return {
        "system": system,
        "temperature": params.temperature,
        "max_new_tokens": params.max_new_tokens,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "repetition_penalty": params.repetition_penalty,
        "seed": params.seed,
        "stop": list(params.stop),
    }


def ask_record(
    reply: str,
    done: Done | None,
    settings: Any,
    error: BaseException | None,
    *,
    data: Any = None,
    reasoning: str | None = None,
) -> dict[str, Any]:
    """`ask --json`'s object. `settings` is None when they could not be loaded (a bad flag);
    `data` is the validated JSON value of a structured reply (--schema, --json-mode)."""
    if done is None and isinstance(error, KeyboardInterrupt):
        done = Done("cancelled")  # Ctrl-C is a cancel: what arrived is kept in `reply`
    record = reply_fields(reply, done)
    record["data"] = data if error is None else None
    record["reasoning"] = reasoning
    record["reasoning_s"] = _seconds(done.reasoning_s) if done else None
    record.update(
        model_object(settings.model) if settings is not None else {"model": None, "backend": None, "endpoint": None}
    )
    record["settings"] = settings_object(settings.system, settings.sampling) if settings is not None else None
    record["error"] = error_object(error) if error is not None else None
    return record


def model_object(spec: Any) -> dict[str, Any]:
    return {"model": spec.name, "backend": spec.backend, "endpoint": safe_url(spec.endpoint) if spec.endpoint else None}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class Collector:
    """A reply writer (the interface `exchange.answer` streams into) that keeps the text;
    also a reasoning writer (it has `close()`) for the records' `reasoning` field."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def __enter__(self) -> Collector:
        return self

    def write(self, text: str) -> None:
        self.parts.append(text)

    def __exit__(self, *exc) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self.parts)

"""Setting values: the table of every setting (its environment variables, parser and
default) and the parsers that turn raw text or TOML values into checked values."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from falconchat.errors import ConfigError

DEFAULT_TIMEOUT_S = 120.0  # the classic tutorial's
DEFAULT_MAX_INPUT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_FILE_SIZE = 1024 * 1024  # each -f/--file source (a folder or a glob counts as one)


# ---- value parsers: raw (str from flags/env, or a TOML value) -> typed ------------------


def _number(raw: Any, kind: type, check: Callable[[Any], bool], allowed: str):
    def fail():
        return ValueError(allowed)

    if isinstance(raw, bool) or (kind is int and isinstance(raw, float) and not raw.is_integer()):
        raise fail()
    try:
        value = kind(raw) if not isinstance(raw, str) else kind(raw.strip())
    except (TypeError, ValueError):
        raise fail() from None
    if isinstance(value, float) and not math.isfinite(value):
        raise fail()
    if not check(value):
        raise fail()
    return value


def _float(check, allowed):
    return lambda raw: _number(raw, float, check, allowed)


def _int(check, allowed):
    return lambda raw: _number(raw, int, check, allowed)


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("true or false")


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("text")
    return raw


def _stops(raw: Any) -> tuple[str, ...]:
    """A list (flags, TOML), a JSON array, or one sequence (environment)."""
    if isinstance(raw, str) and raw.lstrip().startswith("["):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            pass  # not JSON: one stop sequence that starts with "[", such as "[/INST]"
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(s, str) and s for s in raw):
        raise ValueError("non-empty strings")
    return tuple(raw)


def _url(raw: Any) -> str:
    text = _text(raw).strip()
    if not text.startswith(("http://", "https://")) or len(text) < 10:
        raise ValueError("an http:// or https:// URL")
    return text.rstrip("/")


def _auth_scheme(raw: Any) -> str:
    text = _text(raw).strip()
    if not text or " " in text:
        raise ValueError("one word, such as Bearer or Basic")
    return text


def _effort(raw: Any) -> str:
    text = _text(raw).strip().lower()
    if text not in ("low", "medium", "high"):
        raise ValueError("low, medium or high")
    return text


def _size(raw: Any) -> int:
    """Bytes: 1048576, 512K, 1M, 2MB, 1G (K, M, G are powers of 1024)."""
    allowed = "a size such as 1048576, 512K, 1M or 2MB"
    if isinstance(raw, int) and not isinstance(raw, bool):
        text = str(raw)
    elif isinstance(raw, str):
        text = raw.strip().upper().removesuffix("IB").removesuffix("B")
    else:
        raise ValueError(allowed)
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        value = float(number.strip())
    except ValueError:
        raise ValueError(allowed) from None
    if not math.isfinite(value) or value * scale < 1:
        raise ValueError(allowed)
    return int(value * scale)


# name -> (environment variables, parser, default)
SETTINGS: dict[str, tuple[tuple[str, ...], Callable[[Any], Any], Any]] = {
    "model": (("FALCONCHAT_MODEL",), _text, None),
    "endpoint": (("FALCONCHAT_ENDPOINT", "HF_API_FALCON_BASE", "HF_API_FALCOM_BASE"), _url, None),
    "api_key": (("FALCONCHAT_API_KEY", "HF_API_KEY"), _text, None),
    "auth_scheme": (("FALCONCHAT_AUTH_SCHEME",), _auth_scheme, "Bearer"),
    "model_path": (("FALCONCHAT_MODEL_PATH",), _text, None),
    "context_length": (("FALCONCHAT_CONTEXT_LENGTH",), _int(lambda v: v >= 256, "an integer ≥ 256"), None),
    "threads": (("FALCONCHAT_THREADS",), _int(lambda v: 1 <= v <= 512, "an integer ≥ 1"), None),
    "system": (("FALCONCHAT_SYSTEM",), _text, ""),
    # format = "native": the template's enable_thinking (Qwen3, SmolLM3) and reasoning_effort (gpt-oss);
    # None leaves the template's default
    "thinking": (("FALCONCHAT_THINKING",), _bool, None),
    "reasoning_effort": (("FALCONCHAT_REASONING_EFFORT",), _effort, None),
    "temperature": (
        ("FALCONCHAT_TEMPERATURE",),
        _float(lambda v: 0 <= v <= 100, "a number from 0 (greedy) to 100"),
        0.7,
    ),
    "max_new_tokens": (("FALCONCHAT_MAX_NEW_TOKENS",), _int(lambda v: 1 <= v <= 1_000_000, "an integer ≥ 1"), 512),
    "top_p": (("FALCONCHAT_TOP_P",), _float(lambda v: 0 < v <= 1, "a number in (0, 1]"), 0.95),
    "top_k": (("FALCONCHAT_TOP_K",), _int(lambda v: v >= 0, "an integer ≥ 0 (0 turns it off)"), 50),
    "repetition_penalty": (
        ("FALCONCHAT_REPETITION_PENALTY",),
        _float(lambda v: 0 < v <= 10, "a number in (0, 10]"),
        1.0,
    ),
    "seed": (("FALCONCHAT_SEED",), _int(lambda v: 0 <= v < 2**32, "an integer from 0 to 2^32-1"), None),
    "stop": (("FALCONCHAT_STOP",), _stops, ()),
    "timeout": (
        ("FALCONCHAT_TIMEOUT",),
        _float(lambda v: 0 < v <= 86400, "a number of seconds > 0"),
        DEFAULT_TIMEOUT_S,
    ),
    "plain": (("FALCONCHAT_PLAIN",), _bool, False),
    "verbose": (("FALCONCHAT_VERBOSE",), _bool, False),
    "debug": (("FALCONCHAT_DEBUG",), _bool, False),
    "serve_api_key": (("FALCONCHAT_SERVE_API_KEY",), _text, None),
    "no_history": (("FALCONCHAT_NO_HISTORY",), _bool, False),
    # the conversation log; None: on, unless `falconchat logs off` said otherwise
    "log": (("FALCONCHAT_LOG",), _bool, None),
    "role": (("FALCONCHAT_ROLE",), _text, None),
    "max_input_bytes": (
        ("FALCONCHAT_MAX_INPUT_BYTES",),
        _int(lambda v: v >= 1, "an integer ≥ 1"),
        DEFAULT_MAX_INPUT_BYTES,
    ),
    "max_file_size": (("FALCONCHAT_MAX_FILE_SIZE",), _size, DEFAULT_MAX_FILE_SIZE),
}


def parse(name: str, raw: Any, origin: str) -> Any:
    parser = SETTINGS[name][1]
    try:
        return parser(raw)
    except ValueError as allowed:
        shown = raw if not isinstance(raw, str) or len(raw) <= 40 else raw[:40] + "…"
        raise ConfigError(f"invalid {name.replace('_', '-')} {shown!r} (from {origin}): expected {allowed}") from None


SAMPLING_KEYS = ("temperature", "max_new_tokens", "top_p", "top_k", "repetition_penalty", "seed", "stop")

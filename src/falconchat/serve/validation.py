"""`serve`'s validation, shared by both APIs: the error types, the limits, the JSON body and the
value checkers. A leaf: it imports nothing of `serve/`.

Everything here is pure, and fails with `RequestInvalid` (a 422) before any work reaches the model.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_NEW_TOKENS = 1024  # TGI's default when a request names none (if the context leaves that much)
MAX_STOP_SEQUENCES = 4
MAX_TOP_N_TOKENS = 5  # TGI's --max-top-n-tokens default

# A `\uD800`-`\uDFFF` escape: the only way a lone surrogate gets into a parsed string (raw ones are
# not valid UTF-8). Rare, so the whole value is walked only when one appears.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

# Arrays and objects nested deeper than this are refused before the body is parsed: Python's parser
# recurses once a level, and near the interpreter's recursion limit anything that runs then (a
# garbage collection calling an object's __del__) fails with RecursionError. No request needs more.
MAX_JSON_DEPTH = 128
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')
_OPEN_AS_2 = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")  # depth after n brackets: their sum - n
_DEPTH_CHUNK = 65536


class RequestInvalid(ValueError):
    """A 422 with TGI's `{"error", "error_type": "validation"}` body; on a streamed request
    TGI sends it as one error event in a 200 event stream instead. Its text starts as TGI's
    validation messages do, so clients that match on it keep working."""

    def __str__(self) -> str:
        return f"Input validation error: {super().__str__()}"


class ShapeInvalid(RequestInvalid):
    """A body TGI could not even deserialize (not JSON, a wrong type): a 422 even when streamed.
    TGI's JSON extractor, not its validation, refuses these: no validation prefix."""

    def __str__(self) -> str:
        return ValueError.__str__(self)


@dataclass(frozen=True)
class Limits:
    max_input_tokens: int
    max_total_tokens: int
    max_stop_sequences: int = MAX_STOP_SEQUENCES
    max_top_n_tokens: int = MAX_TOP_N_TOKENS


def parse_json(body: bytes) -> Any:
    """JSON as TGI's parser takes it: no NaN/Infinity and no lone surrogate escape (Python's json
    accepts both)."""

    def refuse(constant: str):
        raise ShapeInvalid(f"invalid JSON: {constant} is not a number")

    if nested_deeper_than(body, MAX_JSON_DEPTH):
        raise ShapeInvalid(f"invalid JSON body: nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        value = json.loads(body, parse_constant=refuse)
    except RequestInvalid:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise ShapeInvalid(f"invalid JSON body: {exc}") from None
    except RecursionError:  # thousands of nested arrays or objects: no request has that shape
        raise ShapeInvalid("invalid JSON body: nested too deeply") from None
    if SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(value):
        raise ShapeInvalid("invalid JSON body: a string holds a lone surrogate escape (\\ud800-\\udfff)")
    return value


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether arrays and objects in `body` (JSON) nest more than `limit` deep, brackets in strings
    not counted; in one linear pass at C speed (no bigger share of the time than parsing takes).
    Whatever the parser would read before it finds the body invalid is judged as the parser reads it."""
    if body.count(b"[") + body.count(b"{") <= limit:  # nearly every request: too few to nest that deep
        return False
    encoding = json.detect_encoding(body)
    if not encoding.startswith("utf-8"):  # UTF-16 or -32, which json.loads reads too
        body = body.decode(encoding, "replace").encode("utf-8")
    # Escaped backslashes and quotes go first (left to right, as JSON pairs them), so that every
    # quote left opens or closes a string; then only the text between strings is kept.
    structure = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    outside = b"".join(structure.split(b'"')[::2]).translate(_OPEN_AS_2)
    total, count = 0, 0
    for start in range(0, len(outside), _DEPTH_CHUNK):  # by chunks: a deep body is found in its first
        chunk = outside[start : start + _DEPTH_CHUNK]
        depths = map(operator.sub, itertools.accumulate(chunk, initial=total), itertools.count(count))
        if max(depths) > limit:
            return True
        total, count = total + sum(chunk), count + len(chunk)
    return False


def _has_lone_surrogate(value: Any) -> bool:
    """A surrogate pair is joined into one character by the parser: any surrogate left is alone."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def typed(params: dict, name: str, kinds: tuple[type, ...], what: str):
    """`params[name]` if it is one of `kinds` (None when missing or null)."""
    value = params.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ShapeInvalid(f"`{name}` must be {what}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ShapeInvalid(f"`{name}` must be a finite number")
    return value


def number(params: dict, name: str):
    return typed(params, name, (int, float), "a number")


def integer(params: dict, name: str):
    value = typed(params, name, (int, float), "an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ShapeInvalid(f"`{name}` must be an integer")
        value = int(value)
    return value


def flag(params: dict, name: str) -> bool:
    return bool(typed(params, name, (bool,), "true or false"))


def resolve_max_new_tokens(requested: int, input_tokens: int, limits: Limits) -> int:
    """What a request may generate: as asked, or (not given) TGI's default as far as the context leaves."""
    if requested:
        return requested
    return max(1, min(DEFAULT_MAX_NEW_TOKENS, limits.max_total_tokens - input_tokens))


def check_length(input_tokens: int, max_new_tokens: int, limits: Limits) -> None:
    if input_tokens > limits.max_input_tokens:
        raise RequestInvalid(f"`inputs` must have less than {limits.max_input_tokens} tokens. Given: {input_tokens}")
    if input_tokens + max_new_tokens > limits.max_total_tokens:
        raise RequestInvalid(
            f"`inputs` tokens + `max_new_tokens` must be <= {limits.max_total_tokens}. "
            f"Given: {input_tokens} `inputs` tokens and {max_new_tokens} `max_new_tokens`"
        )

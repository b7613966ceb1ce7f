"""What a GGUF file says about itself (its metadata key/values), read from the header alone:
no model loaded, no tensor read. Strings are untrusted: callers sanitise before showing them."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import IO, Any

from falconchat.backends.gguf import GGUF_MAGIC
from falconchat.errors import ConfigError

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_MAX_STRING = 64 << 20  # a longer "string" is a corrupt header, not a chat template


def read_metadata(path: Path) -> dict[str, Any]:
    """Scalars and strings by key; an array is given as its length (tokens, merges: not needed here)."""
    try:
        with path.open("rb") as fh:
            if fh.read(4) != GGUF_MAGIC:
                raise ConfigError(f"not a GGUF model file: {path.name}")
            _version, _tensors, count = struct.unpack("<IQQ", _exactly(fh, 20))
            return dict(_pair(fh) for _ in range(count))
    except (OSError, struct.error, UnicodeDecodeError, KeyError, ValueError) as exc:
        raise ConfigError(f"cannot read the GGUF header of {path.name}: {exc}") from None


def _pair(fh: IO[bytes]) -> tuple[str, Any]:
    key = _string(fh)
    (kind,) = struct.unpack("<I", _exactly(fh, 4))
    return key, _value(fh, kind)


def _value(fh: IO[bytes], kind: int) -> Any:
    if kind == _STRING:
        return _string(fh)
    if kind == _ARRAY:
        item, count = struct.unpack("<IQ", _exactly(fh, 12))
        if item in _SCALARS:
            fh.seek(struct.calcsize("<" + _SCALARS[item]) * count, 1)
        else:
            for _ in range(count):
                _value(fh, item)
        return count
    fmt = "<" + _SCALARS[kind]
    return struct.unpack(fmt, _exactly(fh, struct.calcsize(fmt)))[0]


def _string(fh: IO[bytes]) -> str:
    (size,) = struct.unpack("<Q", _exactly(fh, 8))
    if size > _MAX_STRING:
        raise ValueError("a string longer than the file could hold")
    return _exactly(fh, size).decode("utf-8", "replace")


def _exactly(fh: IO[bytes], size: int) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("the header ends early")
    return data


def summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The facts `models` and `models info` show: architecture, name, size label, context, template."""
    arch = meta.get("general.architecture")
    return {
        "architecture": arch,
        "name": meta.get("general.name"),
        "parameters": meta.get("general.size_label"),
        "context": meta.get(f"{arch}.context_length") if arch else None,
        "template": meta.get("tokenizer.chat_template"),
    }

"""Rewrite one string in a GGUF file's metadata (for a test's hostile chat template).

GGUF (v2/v3): magic, version, tensor count, metadata count, the metadata
key/values, the tensor descriptions, padding to `general.alignment` (32 by
default), then the tensor data, addressed relative to its start. Changing a
string moves the data, so the header is rebuilt and re-padded and the data
copied after it unchanged.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY, UINT32 = 8, 9, 4


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, fmt: str):
        value = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return value[0]

    def string(self) -> bytes:
        size = self.take("Q")
        self.at += size
        return self.data[self.at - size : self.at]

    def skip_value(self, kind: int) -> None:
        if kind == STRING:
            self.string()
        elif kind == ARRAY:
            item, count = self.take("I"), self.take("Q")
            if item in _SCALARS:
                self.at += struct.calcsize("<" + _SCALARS[item]) * count
            else:
                for _ in range(count):
                    self.skip_value(item)
        else:
            self.take(_SCALARS[kind])


def _string(value: bytes) -> bytes:
    return struct.pack("<Q", len(value)) + value


def with_metadata_string(source: Path, target: Path, key: str, value: str | None, header_bytes: int = 16 << 20) -> None:
    """Copy `source` to `target` with metadata `key` set to the string `value` (added if absent),
    or, with `value` None, without `key`."""
    with source.open("rb") as fh:
        reader = _Reader(fh.read(header_bytes))
    assert reader.take("4s") == b"GGUF"
    version, tensors, count = reader.take("I"), reader.take("Q"), reader.take("Q")
    entries, alignment = [], 32
    for _ in range(count):
        start = reader.at
        name = reader.string()
        kind = reader.take("I")
        value_at = reader.at
        reader.skip_value(kind)
        if name == b"general.alignment" and kind == UINT32:
            alignment = struct.unpack_from("<I", reader.data, value_at)[0]
        if name != key.encode():
            entries.append(reader.data[start : reader.at])
    infos = _tensor_infos(reader.data, tensors, reader.at)  # copied as they are: offsets are relative
    old_data_start = _aligned(reader.at + len(infos), alignment)

    if value is not None:
        entries.append(_string(key.encode()) + struct.pack("<I", STRING) + _string(value.encode()))
    header = b"GGUF" + struct.pack("<IQQ", version, tensors, len(entries)) + b"".join(entries) + infos
    header += b"\0" * (_aligned(len(header), alignment) - len(header))
    with source.open("rb") as src, target.open("wb") as out:
        out.write(header)
        src.seek(old_data_start)
        shutil.copyfileobj(src, out, 1 << 20)


def _tensor_infos(data: bytes, tensors: int, start: int) -> bytes:
    reader = _Reader(data)
    reader.at = start
    for _ in range(tensors):
        reader.string()
        dims = reader.take("I")
        reader.at += 8 * dims + 4 + 8  # dimensions, type, offset
    return data[start : reader.at]


def _aligned(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)

"""`batch` output: JSON Lines written so that no crash leaves a line that breaks the file.

Each group of ready lines goes out in one `write` of whole lines, then
`fsync`: a killed process leaves only complete lines, and grouping keeps
the cost of fsync (milliseconds) from limiting a fast endpoint. `--resume`
reads the ids already there and drops a trailing partial line (left by a
machine that lost power mid-write) before appending. Rows in OpenAI's shape are
keyed on `custom_id`, and with `retry_failed` (an OpenAI batch file's output) a
failed row is dropped, so that its request runs again: the file is rewritten
without it (a temporary file renamed over it), never holding one id twice.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TextIO

from falconchat.batch.input import id_key
from falconchat.errors import FalconchatError, InputError, UsageError


class OutputFile:
    def __init__(self, path: str, *, resume: bool, cwd: Path, retry_failed: bool = False):
        self.retry_failed = retry_failed
        self.path = cwd / path  # a relative path is from the command's directory; messages name it as given
        self.done_keys: set[str] = set()  # ids (as id_key) already answered or errored
        self.discarded_bytes = 0
        if self.path.is_file() and self.path.stat().st_size > 0 and not resume:
            raise UsageError(f"{path} already exists: --resume continues it; or choose another output file")
        try:
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600
            )  # replies are private, as sessions are
        except OSError as exc:
            raise InputError(f"cannot open {path}: {exc.strerror}") from None
        # fsync and truncate apply to files; `-o /dev/stdout` or a FIFO just gets the writes.
        self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        if resume and self._regular:
            self._read_existing()
        self._size = os.fstat(self._fd).st_size

    def _read_existing(self) -> None:
        data = self._read_all()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a partial last line: never part of the results
            self.discarded_bytes = len(data) - end
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        kept: list[bytes] = []
        for number, line in enumerate(data[:end].splitlines(keepends=True), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = id_key(record["custom_id"] if "custom_id" in record else record["id"])
            except (ValueError, KeyError, TypeError):
                raise InputError(
                    f"{self.path} line {number} is not a batch result; fix or remove it to resume"
                ) from None
            if self.retry_failed and record.get("error") is not None:
                continue  # asked again
            self.done_keys.add(key)
            kept.append(line)
        if self.retry_failed and len(b"".join(kept)) < end:
            self._rewrite(b"".join(kept))

    def _rewrite(self, data: bytes) -> None:
        """The file holding `data` alone: a temporary file beside it, renamed over it."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise FalconchatError(f"cannot rewrite {self.path}: {exc.strerror}") from None
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)

    def _read_all(self) -> bytes:
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def write_lines(self, records: list[dict]) -> None:
        if not records:
            return
        data = b"".join(encode(record) for record in records)
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            if self._regular:
                os.fsync(self._fd)
        except OSError as exc:
            # A full disk may take part of a write: cut back to the last whole line.
            try:
                if self._regular:
                    os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise FalconchatError(f"cannot write {self.path}: {exc.strerror}") from None
        self._size += len(data)

    def close(self) -> None:
        os.close(self._fd)


class StdoutOutput:
    """Results on stdout, flushed as they come (a pipe reader sees each line at once)."""

    def __init__(self, stdout: TextIO) -> None:
        self.stdout = stdout
        self.done_keys: set[str] = set()
        self.discarded_bytes = 0

    def write_lines(self, records: list[dict]) -> None:
        out = self.stdout.buffer
        for record in records:
            out.write(encode(record))
        out.flush()

    def close(self) -> None:
        pass


def encode(record: dict) -> bytes:
    """One line; json escapes newlines and control characters inside strings."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")  # readable UTF-8
    except UnicodeEncodeError:  # a lone surrogate (an id from "\\ud800"): escaped, still one valid line
        return (json.dumps(record) + "\n").encode("ascii")


def write_stats(path: Path, stats: dict) -> None:
    """--stats FILE: the summary as JSON, written whole (a temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(stats, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise FalconchatError(f"cannot write {path}: {exc.strerror}") from None

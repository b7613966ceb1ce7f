"""Running a command in process with captured streams: a `environment.Environment` over bytes."""

from __future__ import annotations

import io
from pathlib import Path

from falconchat.environment import Environment


class Terminal(io.TextIOWrapper):
    """A text stream over bytes that says it is (or is not) a terminal."""

    def __init__(self, data: bytes = b"", tty: bool = False):
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="replace")
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode()


def environment(tmp_path: Path, stdin: bytes | None = None, **variables: str) -> Environment:
    """Piped stdin (or a terminal when None), captured stdout/stderr, no user settings."""
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"), **variables}
    stdin_stream = Terminal(b"", tty=True) if stdin is None else Terminal(stdin)
    return Environment(stdin_stream, Terminal(), Terminal(), environ, tmp_path)

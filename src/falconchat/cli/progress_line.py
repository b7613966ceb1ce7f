"""A one-line sign of progress on a terminal's stderr while a reply is collected rather than
shown (`--schema`, `--json-mode`, `--json`, `--no-stream`): without it a user waited minutes
at a blank screen. Nothing at all in a pipe, a log file or with TERM=dumb."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import IO

REDRAW_S = 0.1  # at most ten redraws a second


class ProgressLine:
    """`with ProgressLine(stderr, environ, 512, "JSON") as line:` … `line.counting(writer)`
    wraps a reply writer so that each piece written moves the count; leaving erases the line."""

    def __init__(
        self,
        stream: IO[str],
        environ: Mapping[str, str],
        limit: int,
        what: str = "the reply",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream
        self.limit = limit
        self.what = what
        self.clock = clock
        self.on = _is_terminal(stream) and environ.get("TERM") != "dumb"
        self.tokens = 0
        self._started = 0.0
        self._drawn_at = -1.0

    def __enter__(self) -> ProgressLine:
        self._started = self.clock()
        self._draw()
        return self

    def __exit__(self, *exc) -> None:
        self._put("\r\x1b[K")

    def counting(self, writer):
        return _Counting(writer, self)

    def step(self) -> None:
        self.tokens += 1
        if self.clock() - self._drawn_at >= REDRAW_S:
            self._draw()

    def _draw(self) -> None:
        now = self.clock()
        self._drawn_at = now
        seconds = int(now - self._started)
        self._put(
            f"\r\x1b[Kfalconchat: writing {self.what}… {self.tokens}/{self.limit} tokens · {seconds}s (Ctrl-C stops)"
        )

    def _put(self, text: str) -> None:
        if not self.on:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.on = False


class _Counting:
    """A reply writer that passes every piece on and counts it."""

    def __init__(self, writer, line: ProgressLine):
        self.writer = writer
        self.line = line

    def __enter__(self):
        self.writer.__enter__()
        return self

    def write(self, text: str) -> None:
        self.writer.write(text)
        self.line.step()

    def __exit__(self, *exc) -> None:
        self.writer.__exit__(*exc)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

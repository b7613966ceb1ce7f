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
    wraps a reply writer so that each piece written moves the count; leaving erases the line.
    What else reaches the terminal meanwhile goes through `line.above(print)` (a notice) or
    `line.pausing(reasoning)` (a thinking model's live reasoning), so that it is never drawn
    into the line. `what` None: off (the reply is shown as it comes)."""

    def __init__(
        self,
        stream: IO[str],
        environ: Mapping[str, str],
        limit: int,
        what: str | None = "the reply",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream
        self.limit = limit
        self.what = what
        self.clock = clock
        self.on = what is not None and _is_terminal(stream) and environ.get("TERM") != "dumb"
        self.tokens = 0
        self._started = 0.0
        self._drawn_at = -1.0
        self._paused = False

    def __enter__(self) -> ProgressLine:
        self._started = self.clock()
        self._draw()
        return self

    def __exit__(self, *exc) -> None:
        self._put("\r\x1b[K")

    def counting(self, writer):
        return _Counting(writer, self)

    def pausing(self, reasoning):
        return None if reasoning is None else _Pausing(reasoning, self)

    def above(self, show: Callable[[str], None]) -> Callable[[str], None]:
        """`show` (a notice on the same terminal) with the line erased first and drawn again after."""

        def shown(text: str) -> None:
            self._put("\r\x1b[K")
            show(text)
            if not self._paused:
                self._draw()

        return shown

    def step(self) -> None:
        self.tokens += 1
        if not self._paused and self.clock() - self._drawn_at >= REDRAW_S:
            self._draw()

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._put("\r\x1b[K")

    def resume(self) -> None:
        if self._paused:
            self._paused = False
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


class _Pausing:
    """A reasoning writer during which the line is not drawn (reasoning is drawn live below)."""

    def __init__(self, reasoning, line: ProgressLine):
        self.reasoning = reasoning
        self.line = line

    def write(self, text: str) -> None:
        self.line.pause()
        self.reasoning.write(text)

    def close(self) -> None:
        self.reasoning.close()
        self.line.resume()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

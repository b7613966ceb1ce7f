"""A status line while the chat waits for a reply's first text: that it waits, for how long,
and that Ctrl-C stops it. Drawn on a terminal only (a pipe gets nothing), from a thread
(the main thread is blocked in the request), and erased before anything else is drawn."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from falconchat.text import sanitize
from falconchat.types import ReasoningWriter, ReplyWriter

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
TICK_S = 0.1
QUIET_S = 0.3  # a reply that starts sooner never shows the line (no flicker)
ERASE = "\r\x1b[2K"


class WaitingLine:
    """`start()` shows `⠋ waiting for the model 3s · Ctrl-C stops · WHAT` on `out` (a terminal), redrawn
    every tick; `stop()` erases it for good, `hidden()` while something else is printed."""

    def __init__(self, out: IO[str], what: str, width: int):
        self._out = out
        self._what = " ".join(sanitize(what).split())  # a model's name is untrusted text; one line
        self._width = width
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._shown = False
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def start(self) -> WaitingLine:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="falconchat-waiting", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        with self._lock:
            self._erase()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)

    @contextmanager
    def hidden(self) -> Iterator[None]:
        """Erased while the caller prints; redrawn, below what was printed, at the next tick."""
        with self._lock:
            self._erase()
            yield

    def text(self, now: float) -> str:
        seconds = now - self._started
        frame = FRAMES[int(seconds / TICK_S) % len(FRAMES)]
        line = f"{frame} waiting for the model {seconds:.0f}s · Ctrl-C stops · {self._what}"
        return line[: max(self._width - 1, 1)]  # never wraps: one row, erased by one ERASE

    def _run(self) -> None:
        if self._stopped.wait(QUIET_S):
            return
        while True:
            with self._lock:
                if self._stopped.is_set():
                    return
                self._draw(time.monotonic())
            if self._stopped.wait(TICK_S):
                return

    def _draw(self, now: float) -> None:
        try:
            self._out.write(ERASE + "\x1b[2m" + self.text(now) + "\x1b[0m")
            self._out.flush()
            self._shown = True
        except (OSError, ValueError):  # the terminal went away
            self._stopped.set()

    def _erase(self) -> None:
        if not self._shown:
            return
        self._shown = False
        try:
            self._out.write(ERASE)
            self._out.flush()
        except (OSError, ValueError):
            pass


class FirstOutput:
    """Watches a reply's writers: the waiting line (if any) ends as soon as either draws, and
    `shown` says whether any text reached the screen (for what Ctrl-C can say was kept)."""

    def __init__(self, waiting: WaitingLine | None):
        self.waiting = waiting
        self.shown = False

    def ended(self) -> None:
        if self.waiting is not None:
            self.waiting.stop()

    @contextmanager
    def hidden(self) -> Iterator[None]:
        """The waiting line out of the way while a notice is printed."""
        if self.waiting is None:
            yield
            return
        with self.waiting.hidden():
            yield

    def reply(self, writer: ReplyWriter) -> ReplyWriter:
        return _WatchedReply(writer, self)

    def reasoning(self, writer: ReasoningWriter) -> ReasoningWriter:
        return _WatchedReasoning(writer, self)

    def _wrote(self, text: str) -> None:
        self.ended()
        if text:
            self.shown = True


class _WatchedReply:
    def __init__(self, writer: ReplyWriter, watch: FirstOutput):
        self._writer = writer
        self._watch = watch

    def __enter__(self) -> _WatchedReply:
        self._watch.ended()  # the reply starts drawing (or ends with no text)
        self._writer.__enter__()
        return self

    def write(self, text: str) -> None:
        self._watch._wrote(text)
        self._writer.write(text)

    def __exit__(self, *exc: object) -> None:
        self._writer.__exit__(*exc)


class _WatchedReasoning:
    def __init__(self, writer: ReasoningWriter, watch: FirstOutput):
        self._writer = writer
        self._watch = watch

    def write(self, text: str) -> None:
        self._watch._wrote(text)
        self._writer.write(text)

    def close(self) -> None:
        self._watch.ended()
        self._writer.close()


def waiting_line(out: IO[str], what: str, *, draws: bool) -> WaitingLine | None:
    """The waiting line for `out` when it `draws` (a terminal, not a dumb one); else None."""
    if not draws:
        return None
    try:
        width = os.get_terminal_size(out.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return None
    return WaitingLine(out, what, width)

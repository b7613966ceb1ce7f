"""Drawing a reply: the live Markdown renderer (terminals) and the plain writer (pipes).

Every untrusted text passes through `sanitize()` (or a `StreamSanitizer` when it
arrives in pieces) before it is written, and none of it is ever parsed as Rich
markup: it reaches Rich only inside `Text` and `Markdown` objects.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import IO, TYPE_CHECKING

from falconchat.environment import Environment
from falconchat.live_region import LiveRegion
from falconchat.text import StreamSanitizer
from falconchat.types import ReplyWriter

if TYPE_CHECKING:
    from rich.console import Console


class PlainWriter:
    """The reply as plain text, streamed as it arrives, ending with a newline."""

    def __init__(self, out: IO[str]):
        self._out = out
        self._clean = StreamSanitizer()
        self._last = "\n"

    def __enter__(self) -> PlainWriter:
        self._last = "\n"
        return self

    def write(self, text: str) -> None:
        text = self._clean.feed(text)
        if text:
            self._out.write(text)
            self._out.flush()
            self._last = text[-1]

    def __exit__(self, *exc) -> None:
        self._clean.flush()
        if self._last != "\n":
            self._out.write("\n")
        self._out.flush()


def make_console(out: IO[str], env: Environment, *, soft_wrap: bool = False) -> Console:
    """A console that never interprets markup, emoji codes or highlights on its own, and reads
    TERM, NO_COLOR, COLUMNS and the like from `env`, not from the process.

    `soft_wrap` leaves the wrapping of long lines to the terminal (notices on stderr).
    """
    from rich.console import Console  # noqa: PLC0415 (heavy: rich)

    environ = env.environ
    if _terminal_width(out):
        # On a terminal its own size wins: a COLUMNS exported when the window had another
        # width would keep every reply at that width after the window is resized.
        environ = {name: value for name, value in environ.items() if name not in ("COLUMNS", "LINES")}
    return Console(file=out, markup=False, emoji=False, highlight=False, soft_wrap=soft_wrap, _environ=environ)


def _terminal_width(out: IO[str]) -> int:
    """The width of the terminal `out` writes to; 0 when it is not one."""
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def markdown(text: str):
    from falconchat.markdown_view import ReplyMarkdown  # noqa: PLC0415 (it loads rich)

    return ReplyMarkdown(text)


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


class MarkdownRenderer:
    """Live Markdown for terminals whose cost per token does not grow with the reply.

    Finished blocks (ended by a blank line, or a closed code fence) are printed
    once into the scrollback; only the block being written stays live, redrawn
    at most 20 times a second — and once more when the model pauses, so the last
    words are never held back waiting for the next token. A block taller than the screen is committed
    line by line (a code block is closed and reopened) so nothing is cropped or
    printed twice. What is printed is never cut to the width: a code line wider
    than the window reaches the terminal whole, for it to wrap (the live lines
    are cut: they are redrawn, and erased by rows — see live_region.py).
    """

    REFRESH_S = 0.05

    def __init__(self, console: Console):
        self._console = console
        self._clean = StreamSanitizer()
        self._pending = ""  # source of the live block; starts at a block boundary
        self._gap = False  # a blank line goes before the live block (it follows a finished one)
        self._live: LiveRegion | None = None
        self._last_draw = 0.0
        self._drawn = ""  # the source the live lines show (the start of _pending)
        self._drawing = threading.Lock()  # the reader's writes and the catch-up draw take turns
        self._catch_up: threading.Timer | None = None

    def __enter__(self) -> MarkdownRenderer:
        self._live = LiveRegion(self._console)
        return self

    @property
    def live(self) -> LiveRegion:
        assert self._live is not None, "used outside its `with` block"
        return self._live

    def write(self, text: str) -> None:
        text = self._clean.feed(text)
        if not text:
            return
        with self._drawing:
            self._keep_lines_the_terminal_reflowed()
            self._pending += text
            if "\n" in text:
                self._commit_finished_blocks()
            since = time.monotonic() - self._last_draw
            if since >= self.REFRESH_S:
                self._draw(time.monotonic())
            elif self._catch_up is None:
                self._catch_up = threading.Timer(self.REFRESH_S - since, self._draw_what_is_behind)
                self._catch_up.daemon = True
                self._catch_up.start()

    def _draw_what_is_behind(self) -> None:
        """The catch-up draw, in the timer's thread: the words written since the last draw,
        in case no token comes soon to draw them (a model thinking, a slow endpoint)."""
        with self._drawing:
            self._catch_up = None
            if self._live is not None and self._pending != self._drawn:
                self._draw(time.monotonic())

    def __exit__(self, *exc) -> None:
        self._clean.flush()
        with self._drawing:
            if self._catch_up is not None:
                self._catch_up.cancel()
                self._catch_up = None
            live, self._live = self._live, None
        if live is None:
            return
        self._keep_lines_the_terminal_reflowed()
        with self._console:
            live.close()
            if self._pending.strip():
                self._console.print(self._view(self._pending), crop=False)
        self._pending = ""

    # -- internals --

    def _view(self, source: str):
        """A block as Markdown, after the blank line that separates it from the one before."""
        if not (self._gap and source.strip()):
            return markdown(source)
        from rich.console import Group  # noqa: PLC0415 (heavy: rich)

        return Group("", markdown(source))

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self.live.draw(self._view(self._pending))
        self._drawn = self._pending

    def _commit(self, source: str, rest: str, *, continued: bool = False) -> None:
        """Print a finished block (or, `continued`, the head of one too tall for the screen);
        `rest` is the live block from now on, drawn below it."""
        with self._console:  # one write: the live lines erased, the block, the live lines again
            if source.strip():
                self.live.erase()
                self._console.print(self._view(source), crop=False)
                self._gap = not continued
            self._pending = rest
            self._draw(time.monotonic())

    def _keep_lines_the_terminal_reflowed(self) -> None:
        """The window was narrowed: the terminal has re-wrapped the live lines, perhaps pushing
        some above the screen, out of an erase's reach. The whole lines of source they show
        stay as the terminal has them (no line twice); the rest goes on at the new width.
        Not for code (its live lines are cut to the width: they must be printed whole)."""
        if self._live is None or not self.live.narrowed() or not self._pending.startswith(self._drawn):
            return
        cut = self._drawn.rfind("\n") + 1
        head = self._drawn[:cut]
        if not head.strip() or any(_FENCE.match(line) for line in head.split("\n")):
            return
        if self.live.keep_top(self._view(head)):
            self._pending, self._drawn, self._gap = self._pending[cut:], "", False

    def _commit_finished_blocks(self) -> None:
        split, fence, fence_open_at = _last_block_end(self._pending)
        if split:
            self._commit(self._pending[:split], self._pending[split:])
            split, fence, fence_open_at = _last_block_end(self._pending)
        if self._rows(self._pending) > max(self._console.height - 4, 4):
            self._commit_tall_block(fence, fence_open_at)

    def _commit_tall_block(self, fence: str | None, fence_open_at: int) -> None:
        cut = self._pending.rfind("\n") + 1
        if cut <= 0:
            return
        head, tail = self._pending[:cut], self._pending[cut:]
        if fence is None:
            self._commit(head, tail, continued=True)
            return
        opener_end = self._pending.index("\n", fence_open_at) + 1
        if cut <= opener_end:  # nothing but the opening line yet
            return
        opener = self._pending[fence_open_at:opener_end]
        self._commit(head + fence + "\n", opener + tail, continued=True)

    def _rows(self, text: str) -> int:
        width = max(self._console.width, 20)
        return sum(len(line) // width + 1 for line in text.split("\n"))


def _last_block_end(text: str) -> tuple[int, str | None, int]:
    """Where the last finished block ends in `text` (0 if none), and the code
    fence still open at the end (its marker and where its opening line starts)."""
    split = 0
    fence: str | None = None
    fence_open_at = 0
    seen_content = False
    pos = 0
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        start, pos = pos, pos + len(line)
        match = _FENCE.match(line.rstrip("\n"))
        if fence is None:
            if match:
                fence, fence_open_at = match.group(1), start
            elif not line.strip():
                if seen_content:
                    split, seen_content = pos, False
            else:
                seen_content = True
        elif match and match.group(1).startswith(fence[0] * len(fence)) and not match.group(2).strip():
            fence, split, seen_content = None, pos, False
    return split, fence, fence_open_at


def reply_writer(out: IO[str], env: Environment, *, plain: bool) -> ReplyWriter:
    """Markdown, live, on a terminal; the plain text when piped, asked to, or on a dumb terminal."""
    if plain or not env.draws_on(out):
        return PlainWriter(out)
    return MarkdownRenderer(make_console(out, env))

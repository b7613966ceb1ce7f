"""Showing a thinking model's reasoning apart from its reply.

On a terminal it is drawn dimmed, live, above where the reply will go (only its
last lines, so it never scrolls the screen away), and collapses to one line when
the reply starts — or stays whole with `--show-reasoning`. In a pipe it goes
nowhere, or with `--show-reasoning` to stderr, so stdout holds the reply alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from falconchat.environment import Environment
from falconchat.live_region import LiveRegion
from falconchat.render import make_console
from falconchat.text import StreamSanitizer
from falconchat.types import ReasoningWriter

if TYPE_CHECKING:
    from rich.console import Console


SHOWN_LINES = 6  # of the reasoning, live, while it lasts
REFRESH_S = 0.05


class ReasoningPanel:
    """Live and dimmed on a terminal; one summary line (or all of it, `show`) once it is over."""

    def __init__(self, console: Console, *, show: bool, kept: str = "--show-reasoning keeps it"):
        self._console = console
        self._show = show
        self._kept = kept  # how to see it whole, said in the summary line
        self._clean = StreamSanitizer()
        self._text = ""
        self._live: LiveRegion | None = None
        self._started = 0.0
        self._last_draw = 0.0

    def write(self, text: str) -> None:
        text = self._clean.feed(text)
        if not text:
            return
        if self._live is None:
            self._started = time.monotonic()
            self._live = LiveRegion(self._console)  # erased by the rows it takes, even after a resize
        self._text += text
        now = time.monotonic()
        if now - self._last_draw >= REFRESH_S:
            self._last_draw = now
            self._live.draw(self._tail())

    def close(self) -> None:
        from rich.text import Text  # noqa: PLC0415 (heavy: rich)

        self._text += self._clean.flush()
        live, self._live = self._live, None
        if live is None:
            return
        live.close()
        if self._show:
            self._console.print(Text(self._text.strip(), style="dim"))
        else:
            seconds = time.monotonic() - self._started
            words = len(self._text.split())
            summary = f"▸ reasoned for {seconds:.1f}s ({words} words; {self._kept})"
            self._console.print(Text(summary, style="dim italic"))

    def _tail(self):
        from rich.text import Text  # noqa: PLC0415 (heavy: rich)

        width = max(self._console.width, 20)
        lines = self._text[-width * SHOWN_LINES :].strip().split("\n")[-SHOWN_LINES:]
        return Text("thinking…\n" + "\n".join(lines), style="dim")


class ReasoningToStream:
    """Reasoning as plain text on a stream (stderr), ended by a newline."""

    def __init__(self, out: IO[str]):
        self._out = out
        self._clean = StreamSanitizer()
        self._last = "\n"

    def write(self, text: str) -> None:
        text = self._clean.feed(text)
        if text:
            self._out.write(text)
            self._out.flush()
            self._last = text[-1]

    def close(self) -> None:
        rest = self._clean.flush()
        if rest:
            self._out.write(rest)
            self._last = rest[-1]
        if self._last != "\n":
            self._out.write("\n")
            self._last = "\n"
        self._out.flush()


class NoReasoning:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class KeptReasoning:
    """Passes reasoning on to `inner` and to `keep` as well (the REPL's /reasoning shows the last
    reply's); `keep(None)` first, so a reply without reasoning leaves none behind."""

    def __init__(self, inner: ReasoningWriter, keep: Callable[[str | None], None]):
        self._inner = inner
        self._keep = keep
        keep(None)

    def write(self, text: str) -> None:
        self._keep(text)
        self._inner.write(text)

    def close(self) -> None:
        self._inner.close()


def reasoning_writer(
    out: IO[str], err: IO[str], env: Environment, *, show: bool, kept: str = "--show-reasoning keeps it"
) -> ReasoningWriter:
    """Where reasoning goes when the reply goes to `out`; `kept` says, on the collapsed line,
    how to see it whole."""

    if env.draws_on(out):
        return ReasoningPanel(make_console(out, env), show=show, kept=kept)
    return ReasoningToStream(err) if show else NoReasoning()

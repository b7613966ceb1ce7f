"""The lines of a reply still being written: drawn at the bottom, redrawn in place, erased.

Rich's Live erases as many rows as it drew lines. When the window is narrowed, a terminal
that reflows (tmux, VTE, iTerm2, kitty, Windows Terminal…) re-wraps every line longer than
the new width onto more rows, and a console width that is not the terminal's (a stale
COLUMNS) does the same from the start: Live then leaves rows behind, a line drawn twice.
Here the width of each line drawn is kept, and the erase counts the rows those lines take
at the terminal's width now. (A terminal that crops on resize instead, as xterm does, gets
more rows erased than it shows: narrowing it mid-reply can wipe rows above the live lines
from the screen; the reply itself is printed whole at its end either way.)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.segment import Segment


class LiveRegion:
    """Lines drawn below everything printed, replaced on each `draw`."""

    def __init__(self, console: Console):
        self._console = console
        self._drawn: list[int] = []  # the cells of each line on screen, top to bottom
        self._cursor_hidden = False

    def draw(self, renderable: RenderableType) -> None:
        """Replace the lines on screen by `renderable`, each cut to the width (they are
        transient: the finished block is printed whole) and, to stay erasable, only as
        many as fit on the screen (the newest)."""
        from rich.segment import Segment, Segments  # noqa: PLC0415 (heavy: rich)

        console = self._console
        lines = console.render_lines(renderable, console.options, pad=False)
        width, height = self._terminal_size()
        kept: list[list[Segment]] = []
        rows = 0
        for line in reversed(lines):
            rows += _rows(Segment.get_line_length(line), width)
            if rows >= height and kept:
                break
            kept.insert(0, line)
        with console:  # one write: no flicker
            self.erase()
            if not kept:
                return
            if not self._cursor_hidden:
                console.show_cursor(False)
                self._cursor_hidden = True
            joined = [segment for i, line in enumerate(kept) for segment in ([Segment.line()] if i else []) + line]
            console.print(Segments(joined), end="", crop=False)
            self._drawn = [Segment.get_line_length(line) for line in kept]

    def erase(self) -> None:
        """Remove the lines drawn; the cursor goes where the first of them started."""
        if not self._drawn:
            return
        from rich.control import Control, ControlType  # noqa: PLC0415 (heavy: rich)

        width, _ = self._terminal_size()
        rows = sum(_rows(cells, width) for cells in self._drawn)
        up_and_erase = ((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2))
        self._console.control(
            Control(ControlType.CARRIAGE_RETURN, (ControlType.ERASE_IN_LINE, 2), *up_and_erase * (rows - 1))
        )
        self._drawn = []

    def close(self) -> None:
        self.erase()
        if self._cursor_hidden:
            self._console.show_cursor(True)
            self._cursor_hidden = False

    def _terminal_size(self) -> tuple[int, int]:
        """The terminal's own size (it follows a resize even when COLUMNS is set), else the console's."""
        try:
            size = os.get_terminal_size(self._console.file.fileno())
        except (AttributeError, ValueError, OSError):  # not a terminal: a test's StringIO
            size = None
        if size is None or not size.columns or not size.lines:
            return max(self._console.width, 1), max(self._console.height, 2)
        return size.columns, size.lines


def _rows(cells: int, width: int) -> int:
    """Rows a line of `cells` takes on a terminal `width` wide."""
    return max(1, -(-cells // width))

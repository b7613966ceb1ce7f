"""The lines of a reply still being written: drawn at the bottom, redrawn in place, erased.

Rich's Live erases as many rows as it drew lines. When the window is narrowed, a terminal
that reflows (tmux, VTE, iTerm2, kitty, Windows Terminal…) re-wraps every line longer than
the new width onto more rows, and a console width that is not the terminal's (a stale
COLUMNS) does the same from the start: Live then leaves rows behind, a line drawn twice.
Here the width of each line drawn is kept, and the erase counts the rows those lines take
at the terminal's width now. (A terminal that crops on resize instead, as xterm does, gets
more rows erased than it shows: narrowing it mid-reply can wipe rows above the live lines
from the screen; the reply itself is printed whole at its end either way.)

A reflow can also push rows above the top of the screen (tmux keeps the cursor's row and
moves what no longer fits into the scrollback), where no erase reaches: redrawn, those lines
would show twice. So after a narrowing the renderer keeps the lines it had drawn as they are
(`keep_top`) and goes on below them at the new width.
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
        self._drawn_at = 0  # the terminal's width when the lines were drawn
        self._rendered_at = 0  # the width they were rendered at
        self._whole = True  # every line rendered was drawn (none left out above the screen)

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
            self._drawn_at, self._rendered_at = width, console.options.max_width
            self._whole = len(kept) == len(lines)

    def narrowed(self) -> bool:
        """The terminal is narrower than when the lines were drawn: it has reflowed them onto
        more rows, some maybe out of an erase's reach."""
        return bool(self._drawn) and self._terminal_size()[0] < self._drawn_at

    def keep_top(self, renderable: RenderableType) -> bool:
        """Leave the first drawn lines — those `renderable` renders to, at the width they were
        drawn at — on the screen as they are: no longer erased or redrawn. False (nothing
        kept) when they are not exactly what was drawn."""
        from rich.segment import Segment  # noqa: PLC0415 (heavy: rich)

        if not self._whole:
            return False
        console = self._console
        lines = console.render_lines(renderable, console.options.update_width(self._rendered_at), pad=False)
        cells = [Segment.get_line_length(line) for line in lines]
        if not cells or len(cells) > len(self._drawn) or cells != self._drawn[: len(cells)]:
            return False
        self._drawn = self._drawn[len(cells) :]
        return True

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

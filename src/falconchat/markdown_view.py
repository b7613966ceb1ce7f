"""Rich's Markdown with copy-paste-friendly code blocks, no hidden hyperlinks, no padding.

What reaches the terminal is what a copy gives back: a code line is written whole (a
line wider than the window is wrapped by the terminal, so a copy joins it again), and no
line ends in the spaces Rich pads text with (they become blank rows when the window is
narrowed, and trailing junk in a copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

from rich.markdown import BlockQuote, CodeBlock, ListItem, Markdown, TableElement
from rich.segment import Segment
from rich.syntax import Syntax


def code_theme():
    """Code colours that read on a dark and on a light background: the terminal's own plain
    foreground for names and plain text, and only the six hues of its 16-colour palette
    (which every terminal theme keeps readable on its background), never white, black,
    yellow, bright or 256/true colours, nor a background (as bat's "ansi" theme). Monkai's
    foregrounds were near-white (colour 231): invisible on a light terminal."""
    from pygments.token import Comment, Error, Generic, Keyword, Name, Number, Operator, String, Token  # noqa: PLC0415 (heavy: pygments)
    from rich.style import Style  # noqa: PLC0415 (heavy: rich)
    from rich.syntax import ANSISyntaxTheme  # noqa: PLC0415 (heavy: rich)

    return ANSISyntaxTheme(
        {
            Token: Style(),
            Comment: Style(dim=True),
            Comment.Preproc: Style(color="magenta"),
            Keyword: Style(color="magenta"),
            Keyword.Type: Style(color="cyan"),
            Operator.Word: Style(color="magenta"),
            Name.Builtin: Style(color="cyan"),
            Name.Function: Style(color="blue"),
            Name.Class: Style(color="blue", bold=True),
            Name.Namespace: Style(color="cyan"),
            Name.Exception: Style(color="red"),
            Name.Decorator: Style(color="magenta"),
            Name.Constant: Style(color="red"),
            Name.Attribute: Style(color="cyan"),
            Name.Tag: Style(color="blue"),
            String: Style(color="green"),
            String.Escape: Style(color="cyan"),
            String.Interpol: Style(color="cyan"),
            Number: Style(color="red"),
            Generic.Deleted: Style(color="red"),
            Generic.Inserted: Style(color="green"),
            Generic.Heading: Style(bold=True),
            Generic.Subheading: Style(color="magenta", bold=True),
            Generic.Prompt: Style(bold=True),
            Generic.Error: Style(color="red"),
            Error: Style(color="red", underline=True),
        }
    )


class PlainCodeBlock(CodeBlock):
    """Highlighted code with no padding, background fill or inserted line breaks."""

    def __rich_console__(self, console, options):
        code = str(self.text).rstrip()
        syntax = Syntax(code, self.lexer_name, theme=code_theme(), background_color="default")
        highlighted = syntax.highlight(code)
        highlighted.expand_tabs(syntax.tab_size)
        for line in highlighted.split("\n"):
            yield from line.render(console)  # as it is: neither wrapped nor cropped to the width
            yield Segment.line()


class FoldingTable(TableElement):
    """A table whose cells wrap, breaking a word too long for its column rather than
    cutting it to `virtual…`."""

    def __rich_console__(self, console, options):
        rows = [self.header.row] if self.header is not None and self.header.row is not None else []
        rows += self.body.rows if self.body is not None else []
        for row in rows:
            for cell in row.cells:
                cell.content.overflow = "fold"
        yield from super().__rich_console__(console, options)


class UncutListItem(ListItem):
    """A list item whose code lines are not cut to the width (Rich crops what it indents)."""

    def render_bullet(self, console, options):
        bullet_style = console.get_style("markdown.item.bullet", default="none")
        lines = uncut_lines(console, self.elements, options.update(width=options.max_width - 3), self.style)
        yield from _prefixed(lines, Segment(" • ", bullet_style), Segment(" " * 3, bullet_style))

    def render_number(self, console, options, number, last_number):
        number_width = len(str(last_number)) + 2
        number_style = console.get_style("markdown.item.number", default="none")
        lines = uncut_lines(console, self.elements, options.update(width=options.max_width - number_width), self.style)
        numeral = Segment(f"{number}".rjust(number_width - 1) + " ", number_style)
        yield from _prefixed(lines, numeral, Segment(" " * number_width, number_style))


class UncutBlockQuote(BlockQuote):
    """A block quote whose code lines are not cut to the width."""

    def __rich_console__(self, console, options):
        lines = uncut_lines(console, self.elements, options.update(width=options.max_width - 4), self.style)
        padding = Segment("▌ ", self.style)
        yield from _prefixed(lines, padding, padding)


def uncut_lines(console, renderable, options, style) -> list[list[Segment]]:
    """`console.render_lines` without the crop to the width."""
    segments = console.render(renderable, options)
    return list(Segment.split_lines(Segment.apply_style(segments, style) if style else segments))


def _prefixed(lines: list[list[Segment]], first: Segment, rest: Segment) -> Iterator[Segment]:
    for i, line in enumerate(lines):
        yield rest if i else first
        yield from line
        yield Segment.line()


class ReplyMarkdown(Markdown):
    elements: ClassVar = {
        **Markdown.elements,
        "fence": PlainCodeBlock,
        "code_block": PlainCodeBlock,
        "table_open": FoldingTable,
        "list_item_open": UncutListItem,
        "blockquote_open": UncutBlockQuote,
    }

    def __init__(self, text: str):
        # Links are shown with their URL, never as OSC 8 hyperlinks that hide where they go.
        super().__init__(text, hyperlinks=False)
        # A line break in a reply is a line break on screen, as chat UIs show it (a poem's
        # lines stay lines): Markdown's soft breaks become hard ones.
        for token in self.parsed:
            for child in token.children or ():
                if child.type == "softbreak":
                    child.type = "hardbreak"

    def __rich_console__(self, console, options):
        rendered = super().__rich_console__(console, options)  # segments, in practice
        segments = (
            s for item in rendered for s in ([item] if isinstance(item, Segment) else console.render(item, options))
        )
        yield from without_trailing_spaces(segments)


def without_trailing_spaces(segments: Iterable[Segment]) -> Iterator[Segment]:
    """The segments with the spaces at the end of each line dropped."""
    line: list[Segment] = []
    for segment in segments:
        if segment.control or "\n" not in segment.text:
            line.append(segment)
            continue
        *ended, rest = segment.text.split("\n")
        for part in ended:
            if part:
                line.append(Segment(part, segment.style))
            yield from _rstrip(line)
            yield Segment.line()
            line = []
        if rest:
            line.append(Segment(rest, segment.style))
    yield from _rstrip(line)


def _rstrip(line: list[Segment]) -> list[Segment]:
    while line and not line[-1].control and not line[-1].text.rstrip(" "):
        line.pop()
    if line and not line[-1].control:
        last = line[-1]
        line[-1] = Segment(last.text.rstrip(" "), last.style)
    return line

"""sanitize(), StreamSanitizer, the plain writer and the live Markdown renderer."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from falconchat.environment import Environment
from falconchat.render import MarkdownRenderer, PlainWriter, reply_writer
from falconchat.text import StreamSanitizer, sanitize

# (hostile sequence, what of it stays visible)
HOSTILE = [
    ("\x1b[2J", ""),  # clear screen
    ("\x1b[H", ""),  # cursor home
    ("\x1b[10;20H", ""),
    ("\x1b[3A", ""),  # cursor up
    ("\x1b[K", ""),
    ("\x1b[2K", ""),
    ("\x1b[?25l", ""),  # hide cursor
    ("\x1b[?1049h", ""),  # alternate screen
    ("\x1b[1 q", ""),  # cursor shape (intermediate byte)
    ("\x1b[31m", ""),
    ("\x1b[1;4;38;2;255;0;0m", ""),
    ("\x1b[0m", ""),
    ("\x1b]8;;http://evil\x1b\\text\x1b]8;;\x1b\\", "text"),  # OSC 8 hyperlink, ST
    ("\x1b]8;;http://evil\x07text\x1b]8;;\x07", "text"),  # OSC 8 hyperlink, BEL
    ("\x1b]52;c;cm0gLXJmIH4K\x07", ""),  # OSC 52 clipboard, BEL
    ("\x1b]52;c;cm0gLXJmIH4K\x1b\\", ""),  # OSC 52 clipboard, ST
    ("\x1b]0;pwned title\x07", ""),  # OSC 0 window title
    ("\x1b]2;title\x1b\\", ""),
    ("\x9d0;eight-bit title\x9c", ""),  # 8-bit OSC and ST
    ("\x1bPq#0;2;0;0;0#0~~\x1b\\", ""),  # DCS (sixel)
    ("\x90$q m\x9c", ""),  # 8-bit DCS
    ("\x1b_Gf=100;AAAA\x1b\\", ""),  # APC (kitty graphics)
    ("\x1b^privacy message\x1b\\", ""),  # PM
    ("\x1bXstart of string\x1b\\", ""),  # SOS
    ("\x9b31m", ""),  # 8-bit CSI
    ("\x9b2J", ""),
    ("\x85", ""),
    ("\x8d", ""),
    ("\x84", ""),
    ("\x9c", ""),  # C1 controls
    ("\x00", ""),  # NUL
    ("\x08\x08\x08", ""),  # backspace
    ("\r", ""),  # carriage return
    ("\x07", ""),  # bell
    ("\x0b\x0c", ""),  # VT, FF
    ("\x7f", ""),  # DEL
    ("\u202e", ""),
    ("\u202d", ""),
    ("\u202a", ""),  # bidi overrides/embeddings
    ("\u2066", ""),
    ("\u2067", ""),
    ("\u2068", ""),
    ("\u2069", ""),  # bidi isolates
    ("\x1bc", ""),  # full reset
    ("\x1b7", ""),
    ("\x1b8", ""),  # save/restore cursor
    ("\x1bM", ""),  # reverse index
    ("\x1b(0", ""),  # line-drawing charset
    ("\x1b#8", ""),  # fill the screen with E
    ("\x1b=", ""),
    ("\x1b\\", ""),  # stray ST
    ("\x1b\x1b[31m", ""),  # doubled ESC
    ("\x1b[31m\x1b]0;t\x07\x9b1m\u202e", ""),  # a mixture
]
BEFORE, AFTER = "héllo wörld\t", "\nnext line ✓"
PAYLOADS = [BEFORE + seq + AFTER for seq, _ in HOSTILE]
UNSAFE_CHAR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def assert_clean(text: str) -> None:
    bad = UNSAFE_CHAR.search(text)
    assert bad is None, f"{bad.group()!r} left in {text!r}"


@pytest.mark.parametrize("seq, visible", HOSTILE)
def test_sanitize_removes_sequence_keeps_text(seq, visible):
    out = sanitize(BEFORE + seq + AFTER)
    assert out == BEFORE + visible + AFTER
    assert_clean(out)


def test_corpus_is_large_enough():
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize(
    "tail", ["\x1b]0;unterminated title", "\x1b[", "\x1b", "\x1bP+q", "\x9b3", "\x1b[3", "\x1b[38;2;1"]
)
def test_unterminated_sequence_at_the_end(tail):
    # An unfinished sequence is dropped whole, by sanitize() as by StreamSanitizer.flush().
    assert sanitize("visible" + tail) == "visible"
    assert stream(list("visible" + tail)) == "visible"


def test_plain_text_untouched():
    text = "Tabs\tand\nnewlines, ümlauts, 中文, emoji 🎉, [bold]markup[/bold], <|x|>, \\e[31m"
    assert sanitize(text) == text


def stream(pieces) -> str:
    s = StreamSanitizer()
    return "".join(s.feed(p) for p in pieces) + s.flush()


@pytest.mark.parametrize("payload", [*PAYLOADS, BEFORE + "\x1b]0;unterminated"], ids=repr)
def test_stream_sanitizer_every_split_point(payload):
    whole = sanitize(payload)
    for i in range(len(payload) + 1):
        got = stream([payload[:i], payload[i:]])
        assert got == whole, f"split at {i}: {payload[:i]!r} | {payload[i:]!r}"
    assert stream(list(payload)) == whole


def test_stream_sanitizer_three_way_splits():
    payload = "a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b\x9b1mc\x1b[38;5;1md"
    whole = sanitize(payload)
    for i in range(len(payload) + 1):
        for j in range(i, len(payload) + 1):
            assert stream([payload[:i], payload[i:j], payload[j:]]) == whole


def test_stream_sanitizer_releases_text_promptly():
    s = StreamSanitizer()
    assert s.feed("hello ") == "hello "
    assert s.feed("\x1b[3") == ""
    assert s.feed("1mred") == "red"


# ---- PlainWriter -----------------------------------------------------------------------


def plain(pieces) -> str:
    out = io.StringIO()
    with PlainWriter(out) as w:
        for p in pieces:
            w.write(p)
    return out.getvalue()


def test_plain_writer_adds_one_newline_and_strips_escapes():
    got = plain(["Hello ", "\x1b[3", "1mred", "\x1b[0m", " world", "\x1b]0;t\x07"])
    assert got == "Hello red world\n"


def test_plain_writer_does_not_double_a_final_newline():
    assert plain(["line one\n", "line two\n"]) == "line one\nline two\n"


def test_plain_writer_keeps_text_exactly():
    text = "# Title\n\n```py\n    x = 1\n```\n[bold]lit[/bold]\ttab"
    assert plain([text[i : i + 3] for i in range(0, len(text), 3)]) == text + "\n"


def test_plain_writer_drops_unfinished_sequence_at_end():
    got = plain(["done", "\x1b[3"])
    assert got == "done\n"
    assert "\x1b" not in got


class Tty(io.StringIO):
    def isatty(self):
        return True


def seen(**variables: str) -> Environment:
    """An Environment with these variables and nothing else."""
    return Environment(None, Tty(), Tty(), variables, Path.cwd())


def test_reply_writer_choice(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")  # the process's own TERM is not asked: only the Environment's
    env = seen(TERM="xterm-256color")
    assert isinstance(reply_writer(io.StringIO(), env, plain=False), PlainWriter)
    assert isinstance(reply_writer(io.StringIO(), env, plain=True), PlainWriter)
    assert isinstance(reply_writer(Tty(), env, plain=True), PlainWriter)
    assert isinstance(reply_writer(Tty(), env, plain=False), MarkdownRenderer)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert isinstance(reply_writer(Tty(), seen(TERM="dumb"), plain=False), PlainWriter)


SHOWN = "# Title\n\nSome `code` and **bold** text, " + "word " * 30 + "\n\n```python\nx = 1\n```\n"
_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def drawn(env: Environment) -> str:
    out = Tty()
    with reply_writer(out, env, plain=False) as writer:
        writer.write(SHOWN)
    return out.getvalue()


def colours(text: str) -> set[int]:
    """The colour parameters (foreground, background) of the SGR sequences in `text`."""
    params = {int(p) for m in _SGR.finditer(text) for p in m.group(1).split(";") if p}
    return {p for p in params if 30 <= p <= 38 or 40 <= p <= 48 or 90 <= p <= 107}


def test_no_color_on_the_environment_takes_the_colours_out(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = drawn(seen(TERM="xterm-256color"))
    assert colours(coloured), repr(coloured)  # code is coloured on a terminal…
    monkeypatch.setenv("NO_COLOR", "1")  # (the process's variable changes nothing)
    assert colours(drawn(seen(TERM="xterm-256color"))) == colours(coloured)
    monkeypatch.delenv("NO_COLOR")
    plain = drawn(seen(TERM="xterm-256color", NO_COLOR="1"))
    assert not colours(plain), repr(plain)  # …and not when the Environment says NO_COLOR
    assert "\x1b[1m" in plain and "Title" in plain and "x = 1" in plain  # still Markdown: bold, no colour


def test_columns_on_the_environment_is_the_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for width in (40, 60):
        text = _SGR.sub("", drawn(seen(TERM="xterm-256color", COLUMNS=str(width))))
        lines = [line for line in text.splitlines() if "word" in line]
        assert len(lines) > 2 and max(len(line) for line in lines) <= width, lines
        assert max(len(line) for line in lines) > width - 10  # filled to the width, not a default


# ---- MarkdownRenderer --------------------------------------------------------------------

_TOKEN = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|(.)", re.S)


class Terminal:
    """Just enough of a terminal for Rich Live: scrollback plus a `height`-row screen
    that the cursor cannot leave upwards; styles and hyperlinks are ignored."""

    def __init__(self, width=80, height=24):
        self.width, self.height = width, height
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0

    def _down(self):
        self.row, self.col = self.row + 1, 0
        if self.row == len(self.rows):
            self.rows.append([])

    def feed(self, data: str) -> Terminal:
        for m in _TOKEN.finditer(data):
            params, final, ch = m.groups()
            if final:
                self._csi(params, final)
            elif ch is None:
                continue  # OSC
            elif ch == "\n":
                self._down()
            elif ch == "\r":
                self.col = 0
            elif UNSAFE_CHAR.match(ch):
                raise AssertionError(f"control {ch!r} reached the terminal")
            else:
                if self.col >= self.width:
                    self._down()
                line = self.rows[self.row]
                line.extend(" " * (self.col + 1 - len(line)))
                line[self.col] = ch
                self.col += 1
        return self

    def _csi(self, params: str, final: str) -> None:
        if final == "m" or params + final in ("?25l", "?25h"):
            return
        if final == "A":
            top = max(0, len(self.rows) - self.height)
            self.row = max(top, self.row - int(params or 1))
        elif final == "K" and params == "2":
            self.rows[self.row].clear()
        elif final == "K" and params in ("", "0"):
            del self.rows[self.row][self.col :]
        else:
            raise AssertionError(f"unexpected CSI {params!r} {final!r}")

    def text(self) -> str:
        return "\n".join("".join(r).rstrip() for r in self.rows).strip("\n")

    def screen(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.rows[-self.height :]]


REPLY = (
    "Alpha paragraph speaks **boldly** about apples.\n\n"
    "Bravo paragraph mentions [bold]not bold[/bold] and [link=http://x]y[/link] literally, "
    "and a link to [the docs](http://example.com/docs).\n\n"
    "```python\nx = 1\nfor i in range(3):\n    print(i)\n```\n\n"
    "- charlie item\n- delta item\n\n"
    "Echo closing paragraph without a newline"
)


def tokens(text: str) -> list[str]:
    return re.findall(r"\S+|\s+", text)


def render(text: str, *, color_system="truecolor", refresh=0.0, pieces=None) -> tuple[str, str]:
    """Stream `text` through a MarkdownRenderer; return (raw output, what the terminal shows)."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=24, color_system=color_system)
    renderer = MarkdownRenderer(console)
    renderer.REFRESH_S = refresh
    with renderer:
        for piece in pieces or tokens(text):
            renderer.write(piece)
    raw = out.getvalue()
    return raw, Terminal().feed(raw).text()


@pytest.fixture(
    params=[(None, 0.0), ("truecolor", 0.0), ("truecolor", MarkdownRenderer.REFRESH_S)],
    ids=["mono-every-token", "color-every-token", "color-throttled"],
)
def mode(request):
    return dict(color_system=request.param[0], refresh=request.param[1])


def test_every_word_shown_exactly_once(mode):
    _, shown = render(REPLY, **mode)
    for word in ("Alpha", "apples.", "Bravo", "charlie", "delta", "Echo", "newline", "range(3):"):
        assert len(re.findall(rf"(?<!\S){re.escape(word)}(?!\S)", shown)) == 1, (word, shown)


def test_code_block_lines_start_at_column_zero(mode):
    _, shown = render(REPLY, **mode)
    lines = shown.split("\n")
    assert "x = 1" in lines
    assert "for i in range(3):" in lines
    assert "    print(i)" in lines
    assert "```" not in shown


def test_model_markup_is_literal_and_links_show_their_url(mode):
    raw, shown = render(REPLY, **mode)
    assert "[bold]not bold[/bold]" in shown
    assert "[link=http://x]y[/link]" in shown
    assert "http://example.com/docs" in shown
    assert "\x1b]8;" not in raw


def test_paragraphs_keep_the_blank_line_between_them():
    _, shown = render(REPLY)
    assert "apples.\n\nBravo" in shown


def test_escape_sequences_from_the_model_never_reach_the_terminal():
    evil = "Safe \x1b[2Jtext\x1b]0;title\x07 and \x1b]52;c;AAAA\x07more\x9b31m\u202e here.\n\nNext.\n"
    raw, shown = render(evil, pieces=list(evil))
    for seq in ("\x1b[2J", "\x1b]0;", "\x1b]52;", "\x9b", "\u202e", "\x07"):
        assert seq not in raw
    assert "Safe text and more here." in shown


def test_numbered_list_taller_than_the_screen():
    text = "".join(f"{i}. item-{i:03d}\n" for i in range(1, 101))
    _, shown = render(text)
    for i in range(1, 101):
        assert len(re.findall(rf"\bitem-{i:03d}\b", shown)) == 1, i


def test_lines_taller_than_the_screen():
    text = "".join(f"line-{i:03d}\n" for i in range(1, 101))
    _, shown = render(text)
    for i in range(1, 101):
        assert len(re.findall(rf"\bline-{i:03d}\b", shown)) == 1, i


@pytest.mark.parametrize("refresh", [0.0, MarkdownRenderer.REFRESH_S])
def test_code_block_taller_than_the_screen(refresh):
    text = "Here:\n\n```python\n" + "".join(f"v{i:03d} = {i}\n" for i in range(1, 101)) + "```\n\nEnd.\n"
    _, shown = render(text, refresh=refresh)
    lines = shown.split("\n")
    for i in range(1, 101):
        assert lines.count(f"v{i:03d} = {i}") == 1, i
    assert "```" not in shown
    assert shown.count("Here:") == 1 and shown.count("End.") == 1


@pytest.mark.parametrize("fenced", [False, True], ids=["list", "code"])
def test_newest_line_stays_on_screen_while_streaming(fenced):
    # A block taller than the screen must not be cropped at the top of the screen
    # while it streams: the line just finished is always visible.
    out = io.StringIO()
    term = Terminal()
    console = Console(file=out, force_terminal=True, width=80, height=24, color_system="truecolor")
    renderer = MarkdownRenderer(console)
    renderer.REFRESH_S = 0.0
    with renderer:
        if fenced:
            renderer.write("```python\n")
        for i in range(1, 61):
            line = f"v{i:03d} = {i}" if fenced else f"{i}. item-{i:03d}"
            renderer.write(line + "\n")
            term.feed(out.getvalue())
            out.seek(0), out.truncate()
            assert any(line.split()[-1] in row for row in term.screen()), i


def test_single_line_breaks_outside_code_are_line_breaks():
    """Issue 15, item 7: chat users expect a newline in a reply to be a new line."""
    from rich.console import Console

    from falconchat.markdown_view import ReplyMarkdown

    console = Console(width=60, record=True, file=io.StringIO(), color_system=None)
    console.print(ReplyMarkdown("Roses are red,\nViolets are blue.\n\n```\nkeep\nthese\n```"))
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert lines[:2] == ["Roses are red,", "Violets are blue."]
    assert "keep" in lines and "these" in lines


# ---- issue 15, items 6 and 8: what reaches the terminal is what a copy should give back -------

_SGR_OR_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
LONG_CODE_LINE = 'print(f"created {path}")  # a comment that runs well past the forty columns'


def written_at(width: int, text: str) -> list[str]:
    """The lines written to a `width`-column terminal, styles and cursor moves taken out."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=width, height=24, color_system="truecolor")
    renderer = MarkdownRenderer(console)
    renderer.REFRESH_S = 0.0
    with renderer:
        for piece in tokens(text):
            renderer.write(piece)
    return _SGR_OR_CONTROL.sub("", out.getvalue()).replace("\r", "\n").split("\n")


def test_a_code_line_wider_than_the_terminal_is_written_whole():
    """Item 6: no line break inserted inside a code line (the terminal wraps it, a copy joins it)."""
    text = "Run it:\n\n```python\n" + LONG_CODE_LINE + "\nx = 1\n```\n\nDone.\n"
    lines = written_at(40, text)
    assert LONG_CODE_LINE in lines, lines
    assert "x = 1" in lines


def test_a_code_line_in_a_list_item_or_a_quote_is_written_whole():
    """Rich cuts what it indents to the width: a code line in a list item lost its end."""
    text = (
        "1. Install it, then run this script:\n\n   ```python\n   " + LONG_CODE_LINE + "\n   ```\n"
        "2. Done.\n\n> Quoted:\n>\n> ```\n> " + LONG_CODE_LINE + "\n> ```\n\nEnd.\n"
    )
    from falconchat.markdown_view import ReplyMarkdown

    console = Console(width=40, record=True, file=io.StringIO(), color_system=None)
    console.print(ReplyMarkdown(text), crop=False)
    lines = console.export_text().splitlines()
    assert "   " + LONG_CODE_LINE in lines, lines
    assert "▌ " + LONG_CODE_LINE in lines, lines


def test_no_line_is_padded_with_spaces_to_the_width():
    """Item 6: padded lines became blank rows when the window was narrowed."""
    lines = written_at(80, REPLY + "\n\nA last paragraph long enough to wrap " + "word " * 30)
    assert "Alpha paragraph speaks boldly about apples." in lines
    assert not [line for line in lines if line.endswith(" ")], lines


def test_a_table_cell_wraps_at_40_columns_and_is_never_cut():
    """Item 8: a cell was cut to `virtual…` at 40 columns; every letter of every cell is shown."""
    table = (
        "| Tool | What it does | Install |\n| --- | --- | --- |\n"
        "| venv | creates a virtual environment for the project | built in |\n"
        "| virtualenv | creates virtual environments, faster and older | pip install virtualenv |\n"
    )
    from falconchat.markdown_view import ReplyMarkdown

    for width in (40, 30):
        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        console.print(ReplyMarkdown(table))
        shown = console.export_text()
        assert "…" not in shown, shown
        assert sorted(ch for ch in shown if ch.isalnum()) == sorted(ch for ch in table if ch.isalnum()), shown


CODE = """```python
import os  # a comment

@cache
def compute(alpha_value: int, name="x\\n") -> float:
    result = os.path.join(alpha_value, 3.5, None, True)
    print(f"{result} done")
    return result
```
"""


def test_code_is_drawn_in_the_terminal_s_own_palette_readable_on_light_and_dark():
    """Issue 23 item 4: monokai drew identifiers near-white (38;5;231) with no background:
    invisible on a light terminal. Only the default foreground and the six hues of the
    16-colour palette (31-36), which terminals remap to suit their background."""
    env = seen(TERM="xterm-256color", COLORTERM="truecolor")
    out = Tty()
    with reply_writer(out, env, plain=False) as writer:
        writer.write(CODE)
    shown = out.getvalue()
    codes = [m.group(1) for m in _SGR.finditer(shown)]
    assert codes, repr(shown)
    colours_used = set()
    for code in codes:
        params = code.split(";")
        assert "38" not in params and "48" not in params, code  # no 256-colour or true-colour, no background
        numbers = {int(p) for p in params if p}
        assert not numbers & {30, 37, 90, 97, 33, 93}, code  # never black, white or yellow
        assert not {n for n in numbers if 40 <= n <= 48 or 100 <= n <= 107}, code  # only the default background (49)
        colours_used |= {n for n in numbers if 31 <= n <= 36}
    assert len(colours_used) >= 3, codes  # still highlighted
    assert "compute" in _SGR.sub("", shown) and "alpha_value" in _SGR.sub("", shown)
    plain = Tty()
    with reply_writer(plain, seen(TERM="xterm-256color", NO_COLOR="1"), plain=False) as writer:
        writer.write(CODE)
    assert not colours(plain.getvalue()), repr(plain.getvalue())


def test_words_written_between_draws_are_drawn_when_the_model_pauses():
    # Draws are at most every REFRESH_S; a token inside that window was held until the
    # next token came, so a model pausing (thinking, a slow endpoint) hid its last words.
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=24, color_system="truecolor")
    renderer = MarkdownRenderer(console)
    renderer.REFRESH_S = 0.5  # wide, so that a busy machine still writes both inside it
    with renderer:
        renderer.write("Alpha ")  # drawn at once: the first draw
        renderer.write("Bravo")  # inside the window: held back
        held = Terminal().feed(out.getvalue()).text()
        time.sleep(1.5)  # no token comes
        shown = Terminal().feed(out.getvalue()).text()
    assert "Bravo" not in held
    assert "Alpha Bravo" in shown, shown


def test_no_draw_comes_after_the_reply_is_finished():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=24, color_system="truecolor")
    with MarkdownRenderer(console) as renderer:
        renderer.write("Alpha ")
        renderer.write("Bravo")  # a catch-up draw is due, then the reply ends first
    finished = out.getvalue()
    time.sleep(MarkdownRenderer.REFRESH_S * 4)
    assert out.getvalue() == finished
    assert Terminal().feed(finished).text().count("Alpha Bravo") == 1

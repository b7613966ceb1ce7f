"""A URL the user named (`-f https://…`, `/file https://…`) fetched as readable text: with a
timeout over the whole fetch, a size cap, a bounded number of redirects, its final URL
named; HTML turned into text (headings, lists, code kept; scripts and styles dropped).
Only URLs the user typed come here: nothing fetches a URL a model wrote."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit, urlunsplit

from falconchat.errors import InputError
from falconchat.text import human_size, safe_url

URL_TIMEOUT_S = 30.0  # the longest a fetch may take, whole (connect, redirects, body)
MAX_REDIRECTS = 5
CHUNK = 64 * 1024
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml", "application/javascript")


@dataclass
class Page:
    url: str  # the final URL, after redirects (credentials left out)
    text: str
    size: int  # bytes received
    notes: list[str] = field(default_factory=list)


def fetch(url: str, limit: int, timeout: float = URL_TIMEOUT_S) -> Page:
    """GET `url` as text, or one `InputError` line that says why not."""
    import urllib.error  # noqa: PLC0415 (heavy: urllib.request, only a URL needs it)
    import urllib.request  # noqa: PLC0415 (heavy: http.client, email; only a URL needs it)

    shown = _shown(url)
    opener = _opener()
    request = urllib.request.Request(url, headers={"User-Agent": "falconchat", "Accept": "text/html, text/*;q=0.9"})
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            final = _shown(response.geturl())
            kind = response.headers.get_content_type()
            if not kind.startswith(TEXT_TYPES):
                raise InputError(f"cannot use {final}: it is {kind}, not text")
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > limit:
                raise InputError(f"cannot use {final}: it is {_size(int(length))}, over --max-file-size {_size(limit)}")
            data = _read_bounded(response, limit, deadline, final)
            charset = response.headers.get_content_charset() or "utf-8"
    except InputError:
        raise
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise InputError(f"cannot fetch {shown}: more than {MAX_REDIRECTS} redirects") from None
        raise InputError(f"cannot fetch {shown}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise InputError(f"cannot fetch {shown}: no answer within {timeout:g} s") from None
        raise InputError(f"cannot fetch {shown}: {exc.reason}") from None
    except TimeoutError:
        raise InputError(f"cannot fetch {shown}: no answer within {timeout:g} s") from None
    except (OSError, ValueError) as exc:  # a malformed URL, a connection reset, a bad status line
        raise InputError(f"cannot fetch {safe_url(url)}: {exc}") from None
    try:
        text = data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        text = data.decode("utf-8", errors="replace")
    notes = [f"{shown} was redirected to {final}"] if final != shown else []
    if kind in ("text/html", "application/xhtml+xml"):
        text = html_to_text(text)
    return Page(final, text, len(data), notes)


def _read_bounded(response, limit: int, deadline: float, shown: str) -> bytes:
    """The body, up to `limit` bytes; a server that sends more, or sends too slowly to finish
    before the deadline, is refused rather than waited for."""
    parts: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise InputError(f"cannot use {shown}: it is over --max-file-size {_size(limit)}")
        parts.append(chunk)


def _opener():
    """urllib's opener, its redirects bounded (urllib's own bound is 10)."""
    import urllib.request  # noqa: PLC0415 (heavy: http.client, email; only a URL needs it)

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS
        max_repeats = 2

    return urllib.request.build_opener(Redirects())


def _shown(url: str) -> str:
    """The URL without user:password@ (never shown), its query kept (it says which page)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _size(size: int) -> str:
    return human_size(size)


# ---- HTML to text ------------------------------------------------------------------------------

DROPPED = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas"}
BLOCKS = {"p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "table", "tr", "form",
          "blockquote", "dl", "dt", "dd", "figure", "figcaption", "ul", "ol", "hr", "body"}  # fmt: skip
VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "track", "wbr"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.dropped = 0  # depth inside script/style/…
        self.pre = 0
        self.title: list[str] | None = None
        self.titles: list[str] = []
        self.lists: list[str] = []  # "ul" or "ol:N"

    def newline(self, count: int = 1) -> None:
        text = "".join(self.out)
        have = len(text) - len(text.rstrip("\n"))
        if text.strip():
            self.out.append("\n" * max(0, count - have))

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self.title = []
        if tag in DROPPED and tag not in VOID:
            self.dropped += 1
        if self.dropped:
            return
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.newline(2)
            self.out.append("#" * int(tag[1]) + " ")
        elif tag == "pre":
            self.newline(2)
            self.out.append("```\n")
            self.pre += 1
        elif tag == "code" and not self.pre:
            self.out.append("`")
        elif tag in ("ul", "ol"):
            self.lists.append("ul" if tag == "ul" else "ol:0")
            self.newline(1)
        elif tag == "li":
            self.newline(1)
            indent = "  " * max(0, len(self.lists) - 1)
            if self.lists and self.lists[-1].startswith("ol:"):
                number = int(self.lists[-1][3:]) + 1
                self.lists[-1] = f"ol:{number}"
                self.out.append(f"{indent}{number}. ")
            else:
                self.out.append(f"{indent}- ")
        elif tag == "br":
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" | ")
        elif tag in BLOCKS:
            self.newline(2)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.title is not None:
            self.titles.append(" ".join("".join(self.title).split()))
            self.title = None
        if tag in DROPPED and tag not in VOID:
            self.dropped = max(0, self.dropped - 1)
            return
        if self.dropped:
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
            self.newline(1)
            self.out.append("```")
            self.newline(2)
        elif tag == "code" and not self.pre:
            self.out.append("`")
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self.newline(2)
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6") or tag in BLOCKS:
            self.newline(2)

    def handle_data(self, data: str) -> None:
        if self.title is not None:
            self.title.append(data)
        if self.dropped:
            return
        if self.pre:
            self.out.append(data)
            return
        words = " ".join(data.split())
        if not words:
            if data and self.out and not self.out[-1].endswith((" ", "\n")):
                self.out.append(" ")
            return
        lead = " " if data[:1].isspace() and self.out and not self.out[-1].endswith((" ", "\n")) else ""
        tail = " " if data[-1:].isspace() else ""
        self.out.append(lead + words + tail)


def html_to_text(html: str) -> str:
    """Readable text of an HTML page: its title, headings as `#`, lists as `-`/`1.`, code kept
    (``` around <pre>), scripts, styles and the rest of <head> dropped."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.out).split("\n")]
    text: list[str] = []
    blank = False
    for line in lines:  # at most one blank line in a row
        if not line.strip():
            if not blank and text:
                text.append("")
            blank = True
        else:
            text.append(line)
            blank = False
    body = "\n".join(text).strip()
    title = parser.titles[0] if parser.titles else ""
    return f"Title: {title}\n\n{body}" if title and title not in body[:200] else body

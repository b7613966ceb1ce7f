"""An HTTP/1.1 response read off a socket, for backends/openai_http.py: its head, its body with
the framing undone (chunked, Content-Length, or to the connection's close), and the server-sent
events in it. Reads ask for RECV bytes at a time: a whole streamed reply from a fast server
usually comes in one or two, each piece's whole chunks handed on together.

A failure is the socket's own exception (OSError: TimeoutError, a reset, `Closed`), or
ValueError for bytes that are not HTTP's; the caller says what either means.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

RECV = 65536  # bytes a read asks for: a whole streamed reply usually comes in one or two
HEAD_LIMIT = 65536  # a response head longer than this is not an HTTP server's


class Closed(ConnectionError):
    """The server closed the connection before a whole response head."""


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lowercase names, the bytes after the head); 1xx heads skipped."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > HEAD_LIMIT:
                raise ValueError("a response head too long")
            piece = sock.recv(RECV)
            if not piece:
                raise Closed()
            data += piece
            continue
        lines = data[:end].decode("latin-1").split("\r\n")
        version, _, status_text = lines[0].partition(" ")
        if not version.startswith("HTTP/"):
            raise ValueError("not an HTTP response")
        status = int(status_text[:3])
        headers = {"": version}  # the version, for keeps_alive
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        data = data[end + 4 :]
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the real head follows
            continue
        return status, headers, data


def keeps_alive(headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if headers.get("") == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


class Body:
    """A response's body as pieces of bytes, its framing undone. `reusable` once it has all been
    read, framed (chunked or Content-Length, not to the close) and nothing after it: only then
    may the connection carry another request."""

    def __init__(self, sock: socket.socket, headers: dict[str, str], rest: bytes):
        self.sock = sock
        self.rest = rest
        self.reusable = False
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self.length = None if self.chunked or length is None else int(length)
        if self.length is not None and self.length < 0:
            raise ValueError("a negative Content-Length")

    def pieces(self) -> Iterator[bytes]:
        if self.chunked:
            return self._chunked()
        if self.length is not None:
            return self._sized(self.length)
        return self._to_the_close()

    def _more(self) -> bytes:
        piece = self.sock.recv(RECV)
        if not piece:
            raise Closed()
        return piece

    def _sized(self, left: int) -> Iterator[bytes]:
        piece, self.rest = self.rest, b""
        while True:
            if len(piece) >= left:
                self.reusable = len(piece) == left  # more than the body: not a server to keep
                if left:
                    yield piece[:left]
                return
            if piece:
                yield piece
            left -= len(piece)
            piece = self._more()

    def _to_the_close(self) -> Iterator[bytes]:
        piece, self.rest = self.rest, b""
        while True:
            if piece:
                yield piece
            piece = self.sock.recv(RECV)
            if not piece:
                return

    def _chunked(self) -> Iterator[bytes]:
        """Each read's whole chunks as one piece. `size` is the chunk being read, None while a
        size line is awaited, -1 in the trailers after the last chunk."""
        buf, pos, size = self.rest, 0, None
        self.rest = b""
        out: list[bytes] = []
        while True:
            if size is None or size < 0:
                end = buf.find(b"\r\n", pos)
                if end >= 0:
                    line, pos = buf[pos:end], end + 2
                    if size is not None:  # a trailer line; the empty one ends the body
                        if not line:
                            self.reusable = pos == len(buf)
                            if out:
                                yield b"".join(out)
                            return
                        continue
                    size = int(line.split(b";", 1)[0], 16)
                    if size < 0:
                        raise ValueError("a negative chunk size")
                    size = size or -1
                    continue
            elif len(buf) - pos >= size + 2:
                out.append(buf[pos : pos + size])
                pos += size + 2
                size = None
                continue
            if out:
                yield b"".join(out)
                out = []
            buf = buf[pos:] + self._more()
            pos = 0


def events(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The data of each server-sent event (its `data:` lines joined), in order. Other fields and
    comments are passed over, as the SDK's plain stream passes them over; an event left unended
    at the end of the body is dropped, as the SDK drops it."""
    pending = b""
    data: list[bytes] = []
    carried_cr = False
    for piece in pieces:
        if carried_cr:
            piece = b"\r" + piece
            carried_cr = False
        if b"\r" in piece:  # CRLF and CR end lines too; a CR at the end may be a CRLF cut in two
            if piece.endswith(b"\r"):
                piece, carried_cr = piece[:-1], True
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = (pending + piece).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)

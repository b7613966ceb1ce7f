"""A lean HTTP/1.1 client for the openai backend's streamed POSTs (`/chat/completions`,
`/completions`) to an `http://` server that no proxy stands in front of (issue 27).

`batch` over OpenAI-compatible replicas spent most of its CPU in the openai SDK and httpx
building each request and reading each streamed chunk. Here a request is one `sendall` of bytes
built from a head made once, and the reply's body is read with a few large `recv`s: its framing
(chunked, Content-Length, or to the connection's close) undone and its server-sent events split
here, each `data:` parsed with json.loads into the plain dict the SDK path yields.

- Keep-alive: a Client (one per server and credentials, shared like the SDK's clients:
  backends/openai_sdk.py) keeps its idle connections, safe across threads; a response read whole
  (after `data: [DONE]`, the body to its end) gives its connection back. A stream closed early
  closes its connection: that is how the server learns to stop.
- The SDK's retry rules, the same: RETRIES more tries before the response starts, for a failed
  connection, a timeout, 408, 409, 429 and 5xx (or what `x-should-retry` says), waiting 0.5 s,
  then 1 s (less up to a quarter), or what a Retry-After of at most 120 s asks. A kept
  connection that the server has closed meanwhile is replaced at once (not a retry).
- Failures are this module's exceptions; backends/openai.py words them as the SDK path does.
- https, a proxy, credentials or a query in the URL, or header values HTTP cannot carry: the
  SDK path (`usable()` says which), which knows TLS and proxies.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Generator, Iterator, Mapping
from urllib.parse import urlsplit

RECV = 65536  # bytes a read asks for: a whole streamed reply usually comes in one or two
HEAD_LIMIT = 65536  # a response head longer than this is not an HTTP server's
ERROR_BODY_LIMIT = 1 << 20  # an error response's body is read up to this much
INITIAL_RETRY_DELAY = 0.5  # the openai SDK's backoff (openai/_constants.py)
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0  # a longer Retry-After is not waited for: the error is raised


class HTTPFailure(Exception):
    """A request that failed; `message` is the server's or ours, never shown unfiltered."""

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message


class Unanswered(HTTPFailure):
    """No response: the connection could not be made, or broke before the response's head."""


class TimedOut(HTTPFailure):
    """Nothing arrived for `timeout` seconds (connecting, or waiting for data)."""


class Broken(HTTPFailure):
    """The connection broke, or the body's framing went wrong, after the response started."""


class StatusError(HTTPFailure):
    """An error status (4xx, 5xx, or anything but 2xx), after the retries; `message` as the SDK
    makes it: "Error code: N", and " - " and the JSON error's message when there is one."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class EventError(HTTPFailure):
    """An `error` event in the stream, or an event that is not JSON."""


def usable(endpoint: str, api_key: str | None, headers: Mapping[str, str]) -> bool:
    """Whether this client can take the endpoint's requests: plain http, no proxy for its host
    (HTTP_PROXY / ALL_PROXY / NO_PROXY as httpx reads them, in either case), nothing in the URL
    beyond host, port and path, and header values that HTTP/1.1 can carry as they are."""
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname or parts.username or parts.password:
        return False
    if parts.query or parts.fragment:
        return False
    if not all(_plain_header(name, value) for name, value in headers.items()):
        return False
    if api_key is not None and not _plain_header("Authorization", api_key):
        return False
    proxies = urllib.request.getproxies()  # the process's variables, as httpx reads them
    if proxies.get("http") or proxies.get("all"):
        return bool(urllib.request.proxy_bypass(parts.hostname))  # NO_PROXY names this host
    return True


def _plain_header(name: str, value: str) -> bool:
    text = name + value
    return text.isascii() and text.isprintable() and ":" not in name and name.strip() == name != ""


class Client:
    """Streamed POSTs to one server, on kept-alive connections (shared by threads)."""

    def __init__(self, endpoint: str, api_key: str | None, headers: Mapping[str, str], timeout: float, retries: int):
        parts = urlsplit(endpoint)
        self.address = (parts.hostname or "", parts.port or 80)
        self.base_path = parts.path.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        fields = {
            "Host": parts.netloc,
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "falconchat",
            "Authorization": f"Bearer {api_key or 'none'}",  # local servers take any key; the SDK sends one
        }
        for name, value in headers.items():  # the entry's own headers win, as the SDK's default_headers do
            fields = {key: old for key, old in fields.items() if key.lower() != name.lower()}
            fields[name] = value
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fields.items()).encode("ascii")
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for sock in idle:
            sock.close()

    def stream(self, path: str, body: dict) -> Generator[dict, None, None]:
        """POST `body` as JSON to the base path + `path`; each `data:` event of the reply, parsed,
        until `data: [DONE]`. Sent when first read; closing it early closes the connection."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        request = b"POST %s%s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            self.base_path.encode(),
            path.encode(),
            self._head,
            len(payload),
            payload,
        )
        sock, headers, rest = self._answer(request)
        reusable = False
        try:
            reader = _Body(sock, headers, rest)
            pieces = reader.pieces()
            for data in _events(pieces):
                if data.startswith(b"[DONE]"):
                    for _ in pieces:  # the end of the body (servers end it at once)
                        pass
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    raise EventError("an event that is not JSON") from None
                if isinstance(event, dict) and event.get("error"):
                    error = event["error"]
                    message = error.get("message") if isinstance(error, dict) else None
                    raise EventError(message if isinstance(message, str) and message else "an error mid-stream")
                yield event
            reusable = reader.reusable and _keeps_alive(headers)
        except TimeoutError:
            raise TimedOut() from None
        except (OSError, ValueError):  # reset, closed mid-body, or framing that is not HTTP's
            raise Broken() from None
        finally:
            self._finish(sock, reusable)

    # ---- connections -----------------------------------------------------------------------

    def _answer(self, request: bytes) -> tuple[socket.socket, dict[str, str], bytes]:
        """The request sent and a 2xx response's head read, with the SDK's retries."""
        for tries_taken in range(self.retries + 1):
            left = self.retries - tries_taken
            try:
                sock, status, headers, rest = self._exchange(request)
            except TimeoutError:
                if left:
                    time.sleep(_backoff(tries_taken, None))
                    continue
                raise TimedOut() from None
            except (OSError, ValueError):  # refused, reset, or not an HTTP response
                if left:
                    time.sleep(_backoff(tries_taken, None))
                    continue
                raise Unanswered() from None
            if 200 <= status < 300:
                return sock, headers, rest
            if left and _should_retry(status, headers):
                sock.close()  # as the SDK: the error's body is not read
                time.sleep(_backoff(tries_taken, headers))
                continue
            raise StatusError(status, self._error_message(sock, status, headers, rest))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _exchange(self, request: bytes) -> tuple[socket.socket, int, dict[str, str], bytes]:
        """One try: on a kept connection if there is one (another, new, if the server had closed
        it meanwhile), else on a new one."""
        while True:
            sock, kept = self._take()
            try:
                sock.sendall(request)
                return (sock, *_read_head(sock))
            except TimeoutError:
                sock.close()
                raise
            except (OSError, ValueError) as exc:
                sock.close()
                if kept and isinstance(exc, (ConnectionError, _Closed)):
                    continue  # a kept connection the server had closed: not a try
                raise

    def _take(self) -> tuple[socket.socket, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, False

    def _finish(self, sock: socket.socket, reusable: bool) -> None:
        if reusable:
            with self._lock:
                if not self._closed:
                    self._idle.append(sock)
                    return
        sock.close()

    def _error_message(self, sock: socket.socket, status: int, headers: dict[str, str], rest: bytes) -> str:
        """The SDK's wording: "Error code: N", with " - " and the message of a JSON error body
        ({"error": {"message": …}}, or {"message": …} as vLLM sends it)."""
        taken: list[bytes] = []
        size = 0
        reusable = False
        try:
            reader = _Body(sock, headers, rest)
            for piece in reader.pieces():
                taken.append(piece)
                size += len(piece)
                if size >= ERROR_BODY_LIMIT:
                    break
            reusable = reader.reusable and _keeps_alive(headers)
        except (OSError, ValueError):
            pass  # what arrived is the message
        finally:
            self._finish(sock, reusable)
        message = f"Error code: {status}"
        try:
            body = json.loads(b"".join(taken).decode("utf-8", errors="replace").strip())
        except ValueError:
            return message
        error = body.get("error", body) if isinstance(body, dict) else None
        said = error.get("message") if isinstance(error, dict) else None
        return f"{message} - {said}" if isinstance(said, str) and said else message


class _Closed(ConnectionError):
    """The server closed the connection before a whole response head."""


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lowercase names, the bytes after the head); 1xx heads skipped."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > HEAD_LIMIT:
                raise ValueError("a response head too long")
            piece = sock.recv(RECV)
            if not piece:
                raise _Closed()
            data += piece
            continue
        lines = data[:end].decode("latin-1").split("\r\n")
        version, _, status_text = lines[0].partition(" ")
        if not version.startswith("HTTP/"):
            raise ValueError("not an HTTP response")
        status = int(status_text[:3])
        headers = {"": version}  # the version, for _keeps_alive
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        data = data[end + 4 :]
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the real head follows
            continue
        return status, headers, data


def _keeps_alive(headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if headers.get("") == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


class _Body:
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
            raise _Closed()
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


def _events(pieces: Iterator[bytes]) -> Iterator[bytes]:
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


def _should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """The SDK's rule (openai/_base_client.py `_should_retry`)."""
    after = _retry_after(headers)
    if after is not None and math.isfinite(after) and after > MAX_RETRY_AFTER:
        return False
    said = headers.get("x-should-retry")
    if said in ("true", "false"):
        return said == "true"
    return status in (408, 409, 429) or status >= 500


def _backoff(tries_taken: int, headers: Mapping[str, str] | None) -> float:
    """Seconds to wait before the next try: a short Retry-After, else 0.5 s doubling, less up to
    a quarter (the SDK's `_calculate_retry_timeout`)."""
    after = _retry_after(headers) if headers is not None else None
    if after is not None and math.isfinite(after) and 0 < after <= MAX_RETRY_AFTER:
        return after
    wait = min(INITIAL_RETRY_DELAY * 2.0 ** min(tries_taken, 1000), MAX_RETRY_DELAY)
    return max(0.0, wait * (1 - 0.25 * random.random()))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After-Ms, else Retry-After in seconds or as a date (the SDK's parsing)."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if delay == math.inf and value.strip().lower() not in ("inf", "+inf", "infinity", "+infinity"):
            return MAX_RETRY_AFTER + 1  # an overflowing number: too long, not a malformed one
        return delay / divisor
    try:
        date = email.utils.parsedate_tz(headers.get("retry-after"))
        if date is None:
            return None
        return float(email.utils.mktime_tz(date) - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None

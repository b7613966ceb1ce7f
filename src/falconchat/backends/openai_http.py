"""A lean HTTP/1.1 client for the openai backend's streamed POSTs (`/chat/completions`,
`/completions`) to an `http://` server that no proxy stands in front of (issue 27).

`batch` over OpenAI-compatible replicas spent most of its CPU in the openai SDK and httpx
building each request and reading each streamed chunk. Here a request is one `sendall` of bytes
built from a head made once, and the reply's body is read with a few large `recv`s, its framing
undone and its server-sent events split by backends/http_wire.py, each `data:` parsed with
json.loads into the plain dict the SDK path yields. The openai package is not even imported.

- Keep-alive: a Client (one per server and credentials, shared like the SDK's clients:
  backends/openai_sdk.py) keeps its idle connections, safe across threads; a response read whole
  (after `data: [DONE]`, the body to its end) gives its connection back. A stream closed early
  closes its connection: that is how the server learns to stop.
- The SDK's retry rules, the same: `retries` more tries before the response starts, for a failed
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
from collections.abc import Generator, Mapping
from urllib.parse import urlsplit

from falconchat.backends import http_wire

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
    if parts.query or parts.fragment or not _plain_header("Path", parts.path) or " " in parts.path:
        return False  # the SDK's path quotes what needs quoting
    try:
        parts.port  # noqa: B018 (a port out of range raises: the SDK's path says so)
    except ValueError:
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
            reader = http_wire.Body(sock, headers, rest)
            pieces = reader.pieces()
            for data in http_wire.events(pieces):
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
            reusable = reader.reusable and http_wire.keeps_alive(headers)
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
                return (sock, *http_wire.read_head(sock))
            except BaseException as exc:  # a Ctrl-C too: the socket is not left open
                sock.close()
                if kept and isinstance(exc, ConnectionError):
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
            reader = http_wire.Body(sock, headers, rest)
            for piece in reader.pieces():
                taken.append(piece)
                size += len(piece)
                if size >= ERROR_BODY_LIMIT:
                    break
            reusable = reader.reusable and http_wire.keeps_alive(headers)
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

"""Issue 28's hostile corpus against a running `falconchat serve`, for the soak (`soak.py
--hostile`): each kind of bad client in a loop of its own, beside the well-behaved ones, and
what the server did with each attempt.

- oversized: a body larger than the server's 2 MB, said by its Content-Length (and never sent)
  or sent chunked with no length; expected 413.
- deep_json: 100,000 nested arrays; expected 422.
- bad_utf8, lone_surrogate: a body that is not UTF-8, a string with an unpaired `\\ud800`; 422.
- slow_loris: a body trickled a byte every 0.5 s, never finished; expected 408 after the
  server's --client-timeout, having held no place.
- never_read: a long stream with a small receive window, of which nothing is read; expected to
  be cut by the server (its connection closed, its generation stopped) once its writes have
  waited --client-timeout, having cost no decoding meanwhile (the sequence is paused).

Raw sockets, so that each client does exactly what it says (an HTTP library would finish,
read or retry on its own). Run as a process of its own (`python hostile_corpus.py URL
CLIENT_TIMEOUT [KIND...]`: until its stdin closes, then the outcomes as JSON on stdout), so that building
its bodies does not hold the soak's well-behaved clients up on the same interpreter lock.
"""

from __future__ import annotations

import collections
import json
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

PAUSE_S = 1.0  # between one kind's attempts: a steady trickle of bad requests, not a flood
TRICKLE_S = 0.5  # slow_loris: seconds between bytes
NEVER_READ_RCVBUF = 4096  # the window the server sees for a never-read stream
NEVER_READ_TOKENS = 1500
NEVER_READ_MOST_S = 90.0
TCP_ESTABLISHED = 1


class HostileTally:
    """Per kind, how many attempts ended how ("413", "cut by the server after 12 s", ...)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    def add(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.outcomes[kind][outcome] += 1

    def summary(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {kind: dict(counts) for kind, counts in sorted(self.outcomes.items())}


def _connect(base: str, rcvbuf: int | None = None) -> socket.socket:
    address = urlsplit(base)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # before connecting: the window the server is offered stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect((address.hostname, address.port))
    return sock


def _head(path: str, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()


def _status(sock: socket.socket, timeout: float) -> str:
    """The response's status code, or what happened instead."""
    sock.settimeout(timeout)
    received = b""
    try:
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                return "closed without an answer"
            received += chunk
    except TimeoutError:
        return "no answer"
    except OSError as exc:
        return f"connection error ({type(exc).__name__})"
    return received.split(b" ", 2)[1].decode()


def _send_whole(base: str, path: str, body: bytes) -> str:
    with _connect(base) as sock:
        try:
            sock.sendall(_head(path, len(body)) + body)
        except OSError as exc:  # refused before it was all sent: the answer may be there
            if not isinstance(exc, ConnectionResetError):
                return f"send failed ({type(exc).__name__})"
        return _status(sock, timeout=30)


def oversized(base: str, attempt: int) -> str:
    with _connect(base) as sock:
        if attempt % 2 == 0:  # said by its length, and never sent
            sock.sendall(_head("/generate", 3_000_000))
            return _status(sock, timeout=30)
        sock.sendall(_head("/generate", None))  # chunked: no length, refused as it grows past 2 MB
        chunk = b"[" * 65536
        try:
            for _ in range(48):  # 3 MB
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass  # the server stopped reading once it had refused it
        return _status(sock, timeout=30)


def deep_json(base: str, attempt: int) -> str:
    path = "/generate" if attempt % 2 == 0 else "/v1/chat/completions"
    return _send_whole(base, path, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def bad_utf8(base: str, attempt: int) -> str:
    return _send_whole(base, "/generate", b'{"inputs": "caf\xe9 \xff\xfe"}')


def lone_surrogate(base: str, attempt: int) -> str:
    return _send_whole(base, "/generate_stream", b'{"inputs": "half a pair: \\ud800"}')


def slow_loris(base: str, attempt: int, stop: threading.Event) -> str:
    body = json.dumps({"inputs": "Hello", "parameters": {"max_new_tokens": 8}}).encode()
    with _connect(base) as sock:
        sock.sendall(_head("/generate", len(body)))
        sock.setblocking(False)
        for byte in body[:-1]:  # never the last one
            if stop.wait(TRICKLE_S):
                return "stopped"
            try:
                sock.send(bytes([byte]))
            except BlockingIOError:
                continue
            except OSError:
                break  # the server has answered and closed
            if _readable(sock):
                break
        sock.setblocking(True)
        return _status(sock, timeout=30)


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False
    except OSError:
        return True


def never_read(base: str, attempt: int, stop: threading.Event, client_timeout: float) -> str:
    """Opens a long stream and reads nothing of it until the server closes the connection (seen
    in the socket's TCP state, without reading) or NEVER_READ_MOST_S pass; then reads what is
    there, to tell a stream cut by the server (no final event) from one that ran to its end."""
    body = {"inputs": "1, 2, 3, 4, 5,", "parameters": {"max_new_tokens": NEVER_READ_TOKENS, "top_n_tokens": 5}}
    data = json.dumps(body).encode()
    with _connect(base, rcvbuf=NEVER_READ_RCVBUF) as sock:
        sock.sendall(_head("/generate_stream", len(data)) + data)
        deadline = time.monotonic() + max(NEVER_READ_MOST_S, 3 * client_timeout)
        while _tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() < deadline:
            if stop.wait(0.5):
                return "stopped"
        closed = _tcp_state(sock) != TCP_ESTABLISHED
        received = b""
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    if b'"generated_text": "' in received or b'"generated_text":"' in received:
        return "ran to its end"
    if not closed:
        return "still open"
    return "cut by the server" if received.startswith(b"HTTP/1.1 200") else "closed without an answer"


def _tcp_state(sock: socket.socket) -> int:
    """The connection's TCP state (Linux's tcp_info: its first byte), read without reading data."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def run_all(
    base: str, tally: HostileTally, stop: threading.Event, client_timeout: float, only: set[str] | None = None
) -> list[threading.Thread]:
    """Each kind (or those in `only`) in a thread of its own until `stop`; the threads, started."""
    kinds = {
        "oversized": oversized,
        "deep_json": deep_json,
        "bad_utf8": bad_utf8,
        "lone_surrogate": lone_surrogate,
        "slow_loris": lambda b, n: slow_loris(b, n, stop),
        "never_read": lambda b, n: never_read(b, n, stop, client_timeout),
    }

    def loop(kind: str, attack) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                outcome = attack(base, attempt)
            except OSError as exc:
                outcome = f"connection error ({type(exc).__name__})"
            if outcome != "stopped":
                tally.add(kind, outcome)
            attempt += 1
            stop.wait(PAUSE_S)

    threads = [
        threading.Thread(target=loop, args=(kind, attack), name=f"hostile-{kind}", daemon=True)
        for kind, attack in kinds.items()
        if only is None or kind in only
    ]
    for thread in threads:
        thread.start()
    return threads


def main() -> int:
    base, client_timeout, only = sys.argv[1], float(sys.argv[2]), set(sys.argv[3:]) or None
    tally, stop = HostileTally(), threading.Event()
    threads = run_all(base, tally, stop, client_timeout, only)
    sys.stdin.read()  # until the soak closes it
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    print(json.dumps(tally.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

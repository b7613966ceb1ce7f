"""A scripted OpenAI-compatible server on 127.0.0.1 over raw sockets, for the wire itself:
how a reply's body is framed (chunked, Content-Length, to the close, dribbled a few bytes at a
time), error statuses with the OpenAI API's error body and headers, a server that hangs, one
that cuts the stream, an `error` event mid-stream, a kept connection closed without a word.

Each connection is counted and each request recorded (its path, headers, JSON body, which
connection carried it, and whether it came in a proxy's absolute form: the server answers as a
forward proxy too, so `HTTP_PROXY` pointed at it sends the openai SDK's requests through it).

    with WireServer(chunked(reply("Hel", "lo"))) as server:
        ... POST to server.url + "/v1/chat/completions" ...
        assert server.connections == 1
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

HOLD_S = 30.0  # the longest a hanging answer holds its connection (closing the server ends it sooner)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    proxied: bool  # sent to the server as to a proxy (absolute-form target)
    connection: int  # 1 for the first connection the server accepted


# An answer writes the response to the connection; it returns whether the connection stays open.
Answer = Callable[[socket.socket, Request, threading.Event], bool]


class WireServer:
    def __init__(self, answer: Answer):
        self.answer = answer
        self.requests: list[Request] = []
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> WireServer:
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in self._open:
                conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                line = reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while (field := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = field.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = reader.read(int(headers.get("content-length") or 0))
                proxied = target.startswith("http://")
                request = Request(
                    method,
                    urlsplit(target).path if proxied else target,
                    headers,
                    json.loads(raw or b"null"),
                    proxied,
                    number,
                )
                with self._lock:
                    self.requests.append(request)
                if not self.answer(conn, request, self._stop):
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def made(self, *, proxied: bool) -> list[Request]:
        """The requests the lean client (proxied=False) or the SDK through the proxy sent."""
        return [r for r in self.requests if r.proxied == proxied]


def reply(*pieces: str, finish: str = "stop") -> list[bytes]:
    """A chat reply's server-sent events as vLLM sends them: a chunk a piece, the finishing
    chunk, then `data: [DONE]`."""

    def chunk(delta: dict, finish_reason: str | None) -> bytes:
        payload = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "wire-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    return [chunk({"content": piece}, None) for piece in pieces] + [chunk({}, finish), b"data: [DONE]\n\n"]


def completion(*pieces: str, finish: str = "length") -> list[bytes]:
    """A completions-API reply's events with logprobs in that API's shape (parallel lists)."""

    def chunk(text: str, finish_reason: str | None) -> bytes:
        logprobs = {"tokens": [text], "token_logprobs": [-0.25], "top_logprobs": [{text: -0.25, " x": -2.0}]}
        choice = {"index": 0, "text": text, "logprobs": logprobs if text else None, "finish_reason": finish_reason}
        payload = {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": "wire-model",
            "choices": [choice],
        }
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    return [chunk(piece, None) for piece in pieces] + [chunk("", finish), b"data: [DONE]\n\n"]


STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"


def chunked(events: list[bytes]) -> Answer:
    """A chunk an event, in a kept-alive body (vLLM's, uvicorn's way)."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
        conn.sendall(STREAM_HEAD + b"transfer-encoding: chunked\r\n\r\n")
        for event in events:
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        conn.sendall(b"0\r\n\r\n")
        return True

    return answer


def sized(events: list[bytes]) -> Answer:
    """The whole stream in one Content-Length body, kept alive."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
        body = b"".join(events)
        conn.sendall(STREAM_HEAD + b"content-length: %d\r\n\r\n%s" % (len(body), body))
        return True

    return answer


def to_the_close(events: list[bytes]) -> Answer:
    """No length and no chunks: the body ends when the server closes (Connection: close), as
    Python's http.server sends it; the head goes alone, each event a moment later."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
        conn.sendall(STREAM_HEAD + b"connection: close\r\n\r\n")
        for event in events:
            time.sleep(0.005)
            conn.sendall(event)
        return False

    return answer


def dribbled(events: list[bytes], step: int = 3) -> Answer:
    """A chunked body with CRLF line ends in its events, sent `step` bytes at a time, so that
    every boundary (chunk sizes, CRLFs, events) falls between two reads somewhere."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
        wire = b"transfer-encoding: chunked\r\n\r\n"
        for event in events:
            event = event.replace(b"\n", b"\r\n")
            wire += b"%x\r\n%s\r\n" % (len(event), event)
        wire = STREAM_HEAD + wire + b"0\r\n\r\n"
        for start in range(0, len(wire), step):
            conn.sendall(wire[start : start + step])
            time.sleep(0.0005)
        return True

    return answer


def closing_after(answer: Answer) -> Answer:
    """`answer`, then the connection closed without saying so (an idle keep-alive timeout)."""

    def closed(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
        answer(conn, request, stop)
        time.sleep(0.05)  # the client has its whole response before the close
        return False

    return closed


def status(code: int, message: str = "the server says no", headers: str = "retry-after-ms: 10") -> Answer:
    """An error status with the OpenAI API's error body, kept alive; by default with a short
    `retry-after-ms`, which the SDK honours (so its retries take milliseconds)."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
        body = json.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": str(code)}}
        ).encode()
        fields = "".join(f"{line}\r\n" for line in headers.splitlines()).encode()
        conn.sendall(
            b"HTTP/1.1 %d Error\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
            % (code, fields, len(body), body)
        )
        return True

    return answer


def slow(events: list[bytes], delay_s: float = 0.2) -> Answer:
    """A chunked stream with `delay_s` before each event (a long reply, generated as it goes)."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
        conn.sendall(STREAM_HEAD + b"transfer-encoding: chunked\r\n\r\n")
        for event in events:
            if stop.wait(delay_s):
                return False
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        conn.sendall(b"0\r\n\r\n")
        return True

    return answer


def hang(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
    """The request read, nothing ever sent back."""
    stop.wait(HOLD_S)
    return False


def cut(events: list[bytes]) -> Answer:
    """A chunked stream that stops after `events`: the server goes away mid-body."""

    def answer(conn: socket.socket, request: Request, stop: threading.Event) -> bool:
        conn.sendall(STREAM_HEAD + b"transfer-encoding: chunked\r\n\r\n")
        for event in events:
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        time.sleep(0.05)
        conn.shutdown(socket.SHUT_RDWR)
        return False

    return answer


def error_event(events: list[bytes], message: str) -> Answer:
    """`events`, then an `error` event (as vLLM sends when a request fails mid-generation)."""
    error = {"error": {"message": message, "type": "InternalServerError", "param": None, "code": 500}}
    return chunked([*events, b"data: " + json.dumps(error).encode() + b"\n\n", b"data: [DONE]\n\n"])

"""A scripted text-generation-inference endpoint on 127.0.0.1, over real sockets.

It speaks TGI's wire format: a POST with a JSON body is answered by a
server-sent-event stream (`data:{...}\\n\\n` events in a chunked HTTP/1.1 body,
as TGI's axum server sends them) or by an error status with TGI's JSON error
body. A test queues "scripts" (`stream`, `error`, `page`, `cut`, `error_event`,
`hang`, `stall`, `forever`, `echo`); each request takes the next one, and the last one
queued answers every request after it. Every request is recorded.

    endpoint.stream([" Hello", " world"])
    ... run the client against endpoint.url ...
    assert endpoint.requests[0].body["parameters"]["stream"] ...
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_S = 30.0  # the longest a hanging script holds a connection (teardown releases it sooner)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # the parsed JSON body, or None
    at: float  # time.monotonic() when it arrived


class Reply:
    """What a script can do with one request's connection."""

    def __init__(self, handler: BaseHTTPRequestHandler, endpoint: TgiEndpoint):
        self._handler = handler
        self._endpoint = endpoint
        self._next_id = 1

    def status(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        h = self._handler
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    def start_stream(self) -> None:
        h = self._handler
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()

    def event(self, payload: dict) -> None:
        data = b"data:" + json.dumps(payload).encode() + b"\n\n"
        self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self._handler.wfile.flush()

    def token(
        self, text: str, *, special: bool = False, generated_text: str | None = None, details: dict | None = None
    ) -> None:
        token = {"id": self._next_id, "text": text, "logprob": -0.25, "special": special}
        self._next_id += 1
        self.event({"token": token, "generated_text": generated_text, "details": details})

    def end_stream(self) -> None:
        self._handler.wfile.write(b"0\r\n\r\n")
        self._handler.wfile.flush()

    def hold(self) -> None:
        """Send nothing more until the test ends; then drop the connection."""
        self._endpoint._release.wait(HOLD_S)
        self._handler.close_connection = True


Script = Callable[[Reply], None]


class TgiEndpoint:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.gets: list[Request] = []  # GET /info and the like, apart from the generate requests
        self.disconnected = threading.Event()  # set when a write to a client fails: it went away
        self.model_id = "scripted/tgi"  # what GET /info names
        self._scripts: list[Script] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> TgiEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()  # joins the handler threads
        self._thread.join(5)

    # ---- scripts: each call queues one answer ------------------------------------------

    def script(self, script: Script) -> TgiEndpoint:
        with self._lock:
            self._scripts.append(script)
        return self

    def stream(self, tokens: list[str], finish_reason: str = "length", *, eos: str | None = None) -> TgiEndpoint:
        """A complete reply; the last event carries generated_text and details.
        With `eos`, a final special token (the model's end of sequence) is sent too."""

        def run(reply: Reply) -> None:
            reply.start_stream()
            texts = [(t, False) for t in tokens] + ([(eos, True)] if eos else [])
            for i, (text, special) in enumerate(texts):
                last = i == len(texts) - 1
                reply.token(
                    text,
                    special=special,
                    generated_text="".join(tokens) if last else None,
                    details={"finish_reason": finish_reason, "generated_tokens": len(texts), "seed": None}
                    if last
                    else None,
                )
            reply.end_stream()

        return self.script(run)

    def error(
        self, status: int, message: str, error_type: str | None = None, *, retry_after: str | None = None
    ) -> TgiEndpoint:
        """An error status with TGI's JSON body (`error_type` left out, as HF's proxy does, when None)."""
        payload = {"error": message} | ({"error_type": error_type} if error_type else {})
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return self.script(
            lambda reply: reply.status(status, json.dumps(payload).encode(), "application/json", headers)
        )

    def page(self, status: int, body: str, content_type: str = "text/html; charset=utf-8") -> TgiEndpoint:
        """Something that is not TGI answering: a proxy's or gateway's page."""
        return self.script(lambda reply: reply.status(status, body.encode(), content_type))

    def cut(self, tokens: list[str], *, abrupt: bool = True) -> TgiEndpoint:
        """Some tokens, then the connection closes with no details event: abruptly
        (mid-body) or, with abrupt=False, after a well-formed end of the body."""

        def run(reply: Reply) -> None:
            reply.start_stream()
            for text in tokens:
                reply.token(text)
            if not abrupt:
                reply.end_stream()
            reply._handler.close_connection = True

        return self.script(run)

    def error_event(self, tokens: list[str], message: str, error_type: str = "generation") -> TgiEndpoint:
        """Some tokens, then an error event inside the 200 stream (how TGI reports a failure mid-generation)."""

        def run(reply: Reply) -> None:
            reply.start_stream()
            for text in tokens:
                reply.token(text)
            reply.event({"error": message, "error_type": error_type})
            reply.end_stream()

        return self.script(run)

    def hang(self) -> TgiEndpoint:
        """Accept the request, then send nothing at all."""
        return self.script(lambda reply: reply.hold())

    def stall(self, tokens: list[str]) -> TgiEndpoint:
        """Start the stream, send some tokens, then stall."""

        def run(reply: Reply) -> None:
            reply.start_stream()
            for text in tokens:
                reply.token(text)
            reply.hold()

        return self.script(run)

    def forever(self, interval: float = 0.05) -> TgiEndpoint:
        """A slow stream that never ends by itself: it stops when the client goes
        away (then `disconnected` is set) or when the test ends."""

        def run(reply: Reply) -> None:
            reply.start_stream()
            while not self._release.is_set():
                reply.token(" word")
                time.sleep(interval)
            reply._handler.close_connection = True

        return self.script(run)

    def echo(
        self,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        fault: Callable[[str, int], Any] | None = None,
        seed: int = 0,
        slots: int | None = None,
    ) -> TgiEndpoint:
        """Answer every request with "echo: " + its last user message, after `latency` ±
        `jitter` seconds (seeded), so a test can tell which prompt a reply belongs to.

        `fault(message, attempt)` (attempt counts that message's requests from 1)
        may inject a failure instead: an HTTP status (429 and 503 as TGI's
        "overloaded", 422 as "validation", others as plain errors) or "hang"
        (accept and send nothing: the client times out). `echo_attempts` counts
        requests per message. `slots`: at most that many answered at once, the rest wait their
        turn (a continuous-batching server's shape: a fixed number of sequences, each at a fixed rate)."""
        import random

        rng = random.Random(seed)
        # Many clients connect at once: a backlog as deep as a real server's, or
        # connections beyond the default 5 wait a second for the SYN to be resent.
        self._server.socket.listen(128)
        attempts: dict[str, int] = {}
        self.echo_attempts = attempts
        error_types = {429: "overloaded", 503: "overloaded", 422: "validation"}
        gate = threading.BoundedSemaphore(slots) if slots else contextlib.nullcontext()

        def run(reply: Reply) -> None:
            body = getattr(reply._handler, "parsed_body", None)
            message = _last_user_message(body.get("inputs", "") if isinstance(body, dict) else "")
            with self._lock:
                attempts[message] = attempt = attempts.get(message, 0) + 1
                delay = max(0.0, latency + rng.uniform(-jitter, jitter))
            injected = fault(message, attempt) if fault else None
            if injected == "hang":
                reply.hold()
                return
            if isinstance(injected, int):
                payload = {"error": f"injected {injected}"} | (
                    {"error_type": error_types[injected]} if injected in error_types else {}
                )
                reply.status(injected, json.dumps(payload).encode(), "application/json")
                return
            with gate:
                time.sleep(delay)
            words = message.split()
            tokens = [" echo:", *(" " + w for w in words)]
            reply.start_stream()
            for i, text in enumerate(tokens):
                last = i == len(tokens) - 1
                details = (
                    {"finish_reason": "eos_token", "generated_tokens": len(tokens), "seed": None} if last else None
                )
                reply.token(text, generated_text="".join(tokens) if last else None, details=details)
            reply.end_stream()

        return self.script(run)

    # ---- the server side ---------------------------------------------------------------

    def _next_script(self) -> Script | None:
        with self._lock:
            if len(self._scripts) > 1:
                return self._scripts.pop(0)
            return self._scripts[0] if self._scripts else None


def _handler_for(endpoint: TgiEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as TGI serves them

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes: without this, Nagle's
            # algorithm and the client's delayed ACK add ~40 ms to each answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {name.lower(): value for name, value in self.headers.items()}
            endpoint.requests.append(Request(self.command, self.path, headers, body, time.monotonic()))
            self.parsed_body = body  # for scripts that answer according to the request (echo)
            script = endpoint._next_script()
            try:
                if script is None:
                    Reply(self, endpoint).status(500, b'{"error":"no script queued"}', "application/json")
                else:
                    script(Reply(self, endpoint))
            except (TimeoutError, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                endpoint.disconnected.set()
                self.close_connection = True

        def do_GET(self) -> None:
            # /info says "TGI" (so `--endpoint` alone picks the tgi backend) but not max_total_tokens,
            # like an older endpoint: the client falls back to its default context.
            headers = {name.lower(): value for name, value in self.headers.items()}
            endpoint.gets.append(Request(self.command, self.path, headers, None, time.monotonic()))
            if self.path == "/info":
                info = json.dumps({"model_id": endpoint.model_id}).encode()
                Reply(self, endpoint).status(200, info, "application/json")
            else:
                Reply(self, endpoint).status(404, b'{"error":"not found"}', "application/json")

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def _last_user_message(inputs: str) -> str:
    """The message in a Falcon-style prompt's last "User: …\nAssistant:" (the whole text if none)."""
    start = inputs.rfind("User: ")
    text = inputs[start + len("User: ") :] if start >= 0 else inputs
    return text.removesuffix("\nAssistant:")


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"

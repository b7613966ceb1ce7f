"""A scripted OpenAI-compatible endpoint on 127.0.0.1, over real sockets.

For what a real server will not do on demand: list several models, ignore a
`response_format` (answer 200 with prose), or stream `reasoning_content` deltas
and `<think>` tags split across chunks. `GET /v1/models` lists `models`; each
`POST /v1/chat/completions` streams the next queued reply (the last one answers
every request after it) as the SDK expects: `data: {chunk}` events, then `data: [DONE]`.

    endpoint.reply(content=["Hel", "lo"], reasoning=["Let me think."])
    ... run falconchat against endpoint.url ...
    assert endpoint.requests[0].body["response_format"] ...
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any


@dataclass
class Scripted:
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)  # sent first, as reasoning_content deltas
    reasoning_field: str = "reasoning_content"  # vLLM's newer servers say "reasoning"
    finish_reason: str = "stop"
    delay_s: float = 0.0  # between chunks


class OpenAIEndpoint:
    def __init__(self, models: list[dict] | None = None) -> None:
        self.models = models if models is not None else [{"id": "scripted-model", "object": "model"}]
        self.requests: list[Request] = []
        self._replies: list[Scripted] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def reply(self, content: list[str], reasoning: list[str] = (), **options: Any) -> OpenAIEndpoint:
        with self._lock:
            self._replies.append(Scripted(list(content), list(reasoning), **options))
        return self

    def posts(self) -> list[Any]:
        return [r.body for r in self.requests if r.method == "POST"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Scripted:
        with self._lock:
            if len(self._replies) > 1:
                return self._replies.pop(0)
            return self._replies[0] if self._replies else Scripted(["(no reply queued)"])


def _handler_for(endpoint: OpenAIEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            endpoint.requests.append(Request("GET", self.path, None))
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": endpoint.models})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw) if raw else None
            endpoint.requests.append(Request("POST", self.path, body))
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            script = endpoint._next()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            model = (body or {}).get("model", "scripted-model")
            try:
                for piece in script.reasoning:
                    self._chunk(model, {script.reasoning_field: piece}, None, script.delay_s)
                for piece in script.content:
                    self._chunk(model, {"content": piece}, None, script.delay_s)
                self._chunk(model, {}, script.finish_reason, 0)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _chunk(self, model: str, delta: dict, finish: str | None, delay: float) -> None:
            if delay:
                time.sleep(delay)
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler

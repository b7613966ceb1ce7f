"""A simulated replica for `bench`'s scale rows: an OpenAI-compatible server (vLLM's routes and
wire format) with a continuous-batching server's shape — at most SLOTS sequences decode at
once, each at a fixed number of tokens a second; the requests beyond them wait their turn.

It runs as its own process (`python -m falconchat.bench.replica_sim --slots 4 --rate 100`), so
that killing it is a replica dying (the kernel resets its connections, its port refuses), and
its CPU is never counted as falconchat's. It prints `listening on http://127.0.0.1:PORT` once
it accepts, and at the end (SIGTERM or SIGINT) `served N requests on K connections, C s of CPU`.

The protocol is the real one, as vLLM's server speaks it: `GET /v1/models` (a list with
`owned_by: "vllm"` and `max_model_len`), `POST /v1/chat/completions` and `/v1/completions`
with `stream: true` (`data: {chunk}` server-sent events in a chunked HTTP/1.1 keep-alive body,
a last chunk with `finish_reason`, a `usage` chunk when `stream_options.include_usage`, then
`data: [DONE]`) or without (one JSON object). A request may ask for `logprobs`: each chunk then
carries them in OpenAI's shape (the chat API's `content` list, or the completions API's
`tokens`/`token_logprobs`/`top_logprobs`). Errors are vLLM's JSON error objects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import time

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


class Replica:
    def __init__(self, slots: int, rate: float, tokens: int, model: str):
        self.slots = asyncio.Semaphore(slots)
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.tokens = tokens  # a reply's length when the request sets no max_tokens
        self.model = model
        self.served = 0
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request on a keep-alive connection; False when the client closed it."""
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        path = path.split("?", 1)[0]
        if method == "GET" and path == "/v1/models":
            listing = {"id": self.model, "object": "model", "owned_by": "vllm", "max_model_len": 4096}
            await _send(writer, 200, {"object": "list", "data": [listing]})
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            try:
                body = json.loads(raw)
                assert isinstance(body, dict)
            except (ValueError, AssertionError):
                await _send(writer, 400, _error("the body is not a JSON object", 400))
                return True
            await self._complete(writer, body, chat=path == "/v1/chat/completions")
        else:
            await _send(writer, 404, _error(f"no route {path}", 404))
        return headers.get("connection", "").lower() != "close"

    async def _complete(self, writer: asyncio.StreamWriter, body: dict, *, chat: bool) -> None:
        count = body.get("max_completion_tokens") or body.get("max_tokens") or self.tokens
        count = max(1, min(int(count), self.tokens))
        logprobs = _logprobs_wanted(body, chat)
        stream = bool(body.get("stream"))
        kind = "chat.completion" if chat else "text_completion"
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{os.getpid()}-{self.served}"
        self.served += 1
        async with self.slots:  # a place in the running batch
            loop = asyncio.get_running_loop()
            start = loop.time()
            if stream:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
            pieces = []
            for n in range(count):
                if self.interval:
                    await asyncio.sleep(max(0.0, start + (n + 1) * self.interval - loop.time()))
                piece = " " + WORDS[n % len(WORDS)]
                pieces.append(piece)
                if stream:
                    choice = _choice(chat, piece, logprobs, None)
                    _chunk(writer, _envelope(ident, kind + ".chunk" if chat else kind, self.model, choice))
                    await writer.drain()
        usage = {"prompt_tokens": 8, "completion_tokens": count, "total_tokens": 8 + count}
        if not stream:
            choice = _choice(chat, "".join(pieces), logprobs, "length", tokens=pieces)
            await _send(writer, 200, {**_envelope(ident, kind, self.model, choice), "usage": usage})
            return
        last = _envelope(ident, kind + ".chunk" if chat else kind, self.model, _choice(chat, "", None, "length"))
        _chunk(writer, last)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            _chunk(writer, {**_envelope(ident, kind + ".chunk" if chat else kind, self.model, None), "usage": usage})
        data = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        await writer.drain()


def _logprobs_wanted(body: dict, chat: bool) -> int | None:
    """None: not asked; else how many alternatives (top_logprobs) each token carries."""
    if chat:
        return int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
    value = body.get("logprobs")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _choice(chat: bool, text: str, logprobs: int | None, finish: str | None, tokens: list[str] | None = None) -> dict:
    """A choice: a streamed piece (`finish` None), the stream's last one (`text` ""), or, with
    `tokens`, a whole reply."""
    tokens = tokens if tokens is not None else ([text] if text else [])
    wanted = logprobs is not None and bool(tokens)
    if chat:
        if tokens and finish is not None:  # a whole reply
            choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "delta": {"content": text} if text else {}}
        content = [_token_logprob(t, logprobs or 0) for t in tokens] if wanted else None
        return {**choice, "logprobs": {"content": content} if wanted else None, "finish_reason": finish}
    lists = None
    if wanted:
        lists = {
            "tokens": tokens,
            "token_logprobs": [-0.25 for _ in tokens],
            "top_logprobs": [dict([(t, -0.25), (" other", -1.5)][: logprobs or 1]) for t in tokens],
            "text_offset": [0 for _ in tokens],
        }
    return {"index": 0, "text": text, "logprobs": lists, "finish_reason": finish}


def _token_logprob(token: str, top: int) -> dict:
    entry = {"token": token, "logprob": -0.25, "bytes": list(token.encode())}
    alternatives = [entry, {"token": " other", "logprob": -1.5, "bytes": list(b" other")}]
    return {**entry, "top_logprobs": alternatives[:top]}


def _envelope(ident: str, kind: str, model: str, choice: dict | None) -> dict:
    return {
        "id": ident,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [choice] if choice else [],
    }


def _chunk(writer: asyncio.StreamWriter, payload: dict) -> None:
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def _error(message: str, code: int) -> dict:
    return {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": code}


async def _send(writer: asyncio.StreamWriter, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    writer.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (status, reason.encode(), len(body), body)
    )
    await writer.drain()


async def main(args: argparse.Namespace) -> Replica:
    replica = Replica(args.slots, args.rate, args.tokens, args.model)
    server = await asyncio.start_server(replica.serve, "127.0.0.1", args.port, backlog=256)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    async with server:
        await stop.wait()
    return replica


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slots", type=int, default=4, help="sequences decoded at once")
    parser.add_argument("--rate", type=float, default=100.0, help="tokens a second per sequence (0: at once)")
    parser.add_argument("--tokens", type=int, default=16, help="the longest reply, in tokens")
    parser.add_argument("--model", default="sim/replica")
    served = asyncio.run(main(parser.parse_args()))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"served {served.served} requests on {served.connections} connections, {cpu:.3f} s of CPU", flush=True)

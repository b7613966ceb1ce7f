"""`serve`'s generate API replies, as TGI's: `/generate` and `POST /` (one JSON body) and
`/generate_stream` (server-sent events).

The engine's token stream becomes TGI's `Token`s; `details` (finish reason, counts, seed,
prefill, tokens, top tokens) only when the request asks for them, as TGI sends them.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from falconchat.types import Done, TextDelta

if TYPE_CHECKING:
    from falconchat.serve.engine import Job
    from falconchat.serve.server import TgiServer


class GenerateReplies:
    def __init__(self, server: TgiServer):
        self.server = server
        self.eos_id, self.eos_text = server.backend.eos()

    def token(self, delta: TextDelta) -> dict:
        return {"id": delta.token_id, "text": delta.text, "logprob": delta.logprob, "special": False}

    def top(self, delta: TextDelta | None) -> list[dict]:
        """The most likely tokens at that step (empty unless `top_n_tokens` asked; none for the end token)."""
        if delta is None:
            return []
        piece = self.server.backend.piece
        return [{"id": i, "text": piece(i), "logprob": lp, "special": i == self.eos_id} for i, lp in delta.top]

    def eos_token(self) -> dict:
        return {"id": self.eos_id, "text": self.eos_text, "logprob": None, "special": True}

    async def stream(self, request, job: Job, input_tokens: int):
        from aiohttp import web

        server = self.server
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        text: list[str] = []
        index = 0
        held: TextDelta | None = None  # each token is sent when the next event says whether it is the last

        async def send(token: dict, top: list[dict], generated: str | None = None, details: dict | None = None):
            nonlocal index
            event = {"index": index, "token": token, "top_tokens": top, "generated_text": generated, "details": details}
            index += 1
            await response.write(sse(event))

        try:
            while True:
                try:
                    event = await server._next(request, job)
                except Exception as exc:
                    job.outcome = "error"
                    await response.write(sse({"error": server._failure(exc), "error_type": "generation"}))
                    return response
                if event is None:
                    return response
                if isinstance(event, TextDelta):
                    if held is not None:
                        await send(self.token(held), self.top(held))
                    held = event
                    text.append(event.text)
                    continue
                job.outcome = "done"
                server.metrics.finished(job, event)
                finish = finish_reason(event)
                if finish == "eos_token" or held is None:
                    if held is not None:  # the last text token, then the end token closes the stream
                        await send(self.token(held), self.top(held))
                    last, top = self.eos_token(), []
                else:
                    last, top = self.token(held), self.top(held)
                generated = "".join(text)
                req = job.request
                details = None
                if req.details or req.decoder_input_details:  # as TGI: only when asked
                    details = {
                        "finish_reason": finish,
                        "generated_tokens": generated_tokens(event),
                        "seed": req.seed,
                        "input_length": input_tokens,
                    }
                await send(last, top, (req.inputs + generated) if req.return_full_text else generated, details)
                return response
        except (ConnectionResetError, ConnectionError):
            return response

    async def whole(self, request, job: Job, compat: bool):
        from aiohttp import web

        from falconchat.serve.server import tgi_error

        server = self.server
        deltas: list[TextDelta] = []
        while True:
            try:
                event = await server._next(request, job)
            except Exception as exc:
                job.outcome = "error"
                return tgi_error(424, server._failure(exc), "generation")
            if event is None:
                return web.Response(status=499)
            if isinstance(event, TextDelta):
                deltas.append(event)
                continue
            job.outcome = "done"
            headers = server.metrics.finished(job, event)
            req = job.request
            generated = "".join(d.text for d in deltas)
            body: dict[str, Any] = {"generated_text": (req.inputs + generated) if req.return_full_text else generated}
            if req.details or req.decoder_input_details:
                tokens = [self.token(d) for d in deltas]
                top = [self.top(d) for d in deltas] if req.top_n_tokens else []
                if finish_reason(event) == "eos_token":
                    tokens.append(self.eos_token())
                    if req.top_n_tokens:
                        top.append([])
                prefill: list[dict] = []
                if req.decoder_input_details:
                    loop = asyncio.get_running_loop()
                    pieces = await loop.run_in_executor(None, server.backend.prompt_logprobs, job.prompt)
                    prefill = [{"id": i, "text": t, "logprob": lp} for i, t, lp in pieces]
                body["details"] = {
                    "finish_reason": finish_reason(event),
                    "generated_tokens": generated_tokens(event),
                    "seed": req.seed,
                    "prefill": prefill,
                    "tokens": tokens,
                    "top_tokens": top,
                    "best_of_sequences": None,
                }
            return web.json_response([body] if compat else body, headers=headers)


def generated_tokens(done: Done) -> int:
    """As TGI counts them: the end token is one of them."""
    return done.completion_tokens + (1 if finish_reason(done) == "eos_token" else 0)


def finish_reason(done: Done) -> str:
    if done.finish_reason == "length":
        return "length"
    return "stop_sequence" if done.stop_sequence else "eos_token"


def sse(payload: dict) -> bytes:
    return b"data:" + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"

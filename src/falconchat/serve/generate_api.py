"""`serve`'s generate API, as TGI's: `/generate` and `POST /` (one JSON body),
`/generate_stream` (server-sent events) and `/tokenize`.

Requests are read by generate_requests.py; the engine's token stream becomes TGI's `Token`s;
`details` (finish reason, counts, seed, prefill, tokens, top tokens) only when the request asks
for them, as TGI sends them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from falconchat.serve.engine import Job
from falconchat.serve.generate_requests import GenerateRequest, parse_request
from falconchat.serve.relay import Relay, error_response, failure_message, next_event, sse
from falconchat.serve.validation import (
    RequestInvalid,
    ShapeInvalid,
    check_length,
    parse_json,
    resolve_max_new_tokens,
)
from falconchat.types import Done, TextDelta


class GenerateAPI:
    def __init__(self, relay: Relay):
        self.relay = relay
        self.eos_id, self.eos_text = relay.backend.eos()

    def add_to(self, app) -> None:
        app.router.add_post("/", self.compat_generate)
        app.router.add_post("/generate", self.generate)
        app.router.add_post("/generate_stream", self.generate_stream)
        app.router.add_post("/tokenize", self.tokenize)

    # -- requests --

    async def compat_generate(self, request):
        return await self._serve(request, stream=None)

    async def generate(self, request):
        return await self._serve(request, stream=False)

    async def generate_stream(self, request):
        return await self._serve(request, stream=True)

    async def tokenize(self, request):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        try:
            payload = parse_json(await self.relay.read_body(request)) if request.can_read_body else None
            if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), str) or not payload["inputs"]:
                raise RequestInvalid("`inputs` must be a non-empty string")
        except RequestInvalid as exc:
            return error_response(request, 422, str(exc), "validation")
        pieces = await asyncio.get_running_loop().run_in_executor(
            None, self.relay.backend.token_pieces, payload["inputs"]
        )
        return web.json_response([{"id": i, "text": t, "start": a, "stop": b} for i, t, a, b in pieces])

    async def _serve(self, request, stream: bool | None):
        payload = None
        try:
            payload = parse_json(await self.relay.read_body(request))
            req = parse_request(payload, self.relay.limits, stream=stream)
            req, prompt, input_tokens = await asyncio.get_running_loop().run_in_executor(None, self._prepare, req)
        except RequestInvalid as exc:
            streamed = stream if stream is not None else isinstance(payload, dict) and payload.get("stream") is True
            if streamed and not isinstance(exc, ShapeInvalid):
                return await self._stream_error(request, str(exc))
            return error_response(request, 422, str(exc), "validation")

        async def reply(job: Job):
            if req.stream:
                return await self.stream(request, job, input_tokens)
            return await self.whole(request, job, compat=stream is None)

        return await self.relay.run(request, Job(req, prompt, asyncio.get_running_loop()), reply)

    async def _stream_error(self, request, message: str):
        """As TGI: a streamed request refused by validation is a 200 event stream of one error event."""
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(sse({"error": message, "error_type": "validation"}))
        await response.write_eof()
        return response

    def _prepare(self, req: GenerateRequest) -> tuple[GenerateRequest, str, int]:
        """The request with its `max_new_tokens` settled, the prompt (truncated to its last
        `truncate` tokens when asked) and its length, checked."""
        backend, limits = self.relay.backend, self.relay.limits
        tokens = backend.tokens(req.inputs)
        prompt = req.inputs
        if req.truncate is not None and len(tokens) > req.truncate:
            tokens = tokens[-req.truncate :]
            prompt = backend.text(tokens)
        max_new = resolve_max_new_tokens(req.params.max_new_tokens, len(tokens), limits)
        check_length(len(tokens), max_new, limits)
        req = dataclasses.replace(req, params=req.params.with_changes(max_new_tokens=max_new))
        return req, prompt, len(tokens)

    # -- replies --

    def token(self, delta: TextDelta) -> dict:
        return {"id": delta.token_id, "text": delta.text, "logprob": delta.logprob, "special": False}

    def top(self, delta: TextDelta | None) -> list[dict]:
        """The most likely tokens at that step (empty unless `top_n_tokens` asked; none for the end token)."""
        if delta is None:
            return []
        piece = self.relay.backend.piece
        return [{"id": i, "text": piece(i), "logprob": lp, "special": i == self.eos_id} for i, lp in delta.top]

    def eos_token(self) -> dict:
        return {"id": self.eos_id, "text": self.eos_text, "logprob": None, "special": True}

    async def stream(self, request, job: Job, input_tokens: int):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        text: list[str] = []
        index = 0
        held: TextDelta | None = None  # each token is sent when the next event says whether it is the last

        async def send(token: dict, top: list[dict], generated: str | None = None, details: dict | None = None):
            nonlocal index
            event = {"index": index, "token": token, "top_tokens": top, "generated_text": generated, "details": details}
            index += 1
            await self.relay.write(request, response, sse(event))

        try:
            while True:
                try:
                    event = await next_event(request, job)
                except Exception as exc:
                    job.outcome = "error"
                    await self.relay.write(
                        request, response, sse({"error": failure_message(exc), "error_type": "generation"})
                    )
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
                self.relay.metrics.finished(job, event)
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
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        deltas: list[TextDelta] = []
        while True:
            try:
                event = await next_event(request, job)
            except Exception as exc:
                job.outcome = "error"
                return error_response(request, 424, failure_message(exc), "generation")
            if event is None:
                return web.Response(status=499)
            if isinstance(event, TextDelta):
                deltas.append(event)
                continue
            job.outcome = "done"
            headers = self.relay.metrics.finished(job, event)
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
                    pieces = await loop.run_in_executor(None, self.relay.backend.prompt_logprobs, job.prompt)
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

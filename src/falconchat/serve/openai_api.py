"""`serve`'s Messages API, as TGI's: `/v1/chat/completions`, `/v1/completions`, `/v1/models`.

Chat messages are formatted with the model's own chat template; the reply comes from the same
engine queue as the generate API. Stop sequences are cut from the text (as OpenAI does), so text
that may be the start of one is held back until the next token says otherwise.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from falconchat import __version__
from falconchat.errors import FalconchatError
from falconchat.serve.engine import Job
from falconchat.serve.generate_requests import GenerateRequest
from falconchat.serve.openai_requests import OpenAIRequest, parse_chat, parse_completion
from falconchat.serve.relay import Relay, error_body, error_response, failure_message, next_event, sse
from falconchat.serve.validation import RequestInvalid, check_length, parse_json
from falconchat.types import Done, TextDelta

FINGERPRINT = f"{__version__}-falconchat-serve"


class OpenAIAPI:
    def __init__(self, relay: Relay):
        self.relay = relay
        self.created = int(time.time())

    def add_to(self, app) -> None:
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{model:.+}", self.model)

    # -- models --

    def _model_info(self) -> dict:
        return {"id": self.relay.model_id, "object": "model", "created": self.created, "owned_by": "falconchat"}

    async def models(self, request):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        return web.json_response({"object": "list", "data": [self._model_info()]})

    async def model(self, request):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        if request.match_info["model"] != self.relay.model_id:
            return error_response(request, 404, f"model {request.match_info['model'][:80]!r} not found", "not_found")
        return web.json_response(self._model_info())

    # -- generation --

    async def chat_completions(self, request):
        return await self._serve(request, chat=True)

    async def completions(self, request):
        return await self._serve(request, chat=False)

    async def _serve(self, request, *, chat: bool):
        relay = self.relay
        try:
            payload = parse_json(await self.relay.read_body(request))
            req = parse_chat(payload, relay.limits) if chat else parse_completion(payload, relay.limits)
            prompt, input_tokens = await asyncio.get_running_loop().run_in_executor(None, self._prepare, req)
        except RequestInvalid as exc:
            return error_response(request, 422, str(exc), "validation")
        params = req.params
        if not params.max_new_tokens:  # TGI's default: what the context leaves
            params = params.with_changes(max_new_tokens=relay.limits.max_total_tokens - input_tokens)
        generate = GenerateRequest(
            inputs=prompt,
            params=params,
            stops=params.stop,
            stream=req.stream,
            details=False,
            decoder_input_details=False,
            return_full_text=False,
            truncate=None,
            top_n_tokens=req.top_logprobs,
            sampling=params.temperature > 0,
            seed=params.seed,
        )
        reply = Reply(
            id=("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24],
            model=req.model or relay.model_id,
            chat=chat,
            stops=params.stop,
        )

        async def answer(job: Job):
            if req.stream:
                return await self._stream(request, job, req, reply)
            return await self._whole(request, job, req, reply)

        return await relay.run(request, Job(generate, prompt, asyncio.get_running_loop()), answer)

    def _logprobs(self, deltas: list[TextDelta]) -> dict:
        piece = self.relay.backend.piece
        return {
            "content": [
                {
                    "token": d.text,
                    "logprob": d.logprob if d.logprob is not None else 0.0,
                    "top_logprobs": [{"token": piece(i), "logprob": lp} for i, lp in d.top],
                }
                for d in deltas
            ]
        }

    def _prepare(self, req: OpenAIRequest) -> tuple[str, int]:
        """The prompt (chat: the model's own template) and its length, checked against the context."""
        backend = self.relay.backend
        if req.messages is not None:
            try:
                prompt = backend.native_prompt(req.messages)
            except FalconchatError as exc:
                raise RequestInvalid(exc.message) from None
        else:
            prompt = req.prompt or ""
        tokens = len(backend.tokens(prompt))
        check_length(tokens, req.params.max_new_tokens or 1, self.relay.limits)
        return prompt, tokens

    async def _whole(self, request, job: Job, req: OpenAIRequest, reply: Reply):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        sent: list[TextDelta] = []
        while True:
            try:
                event = await next_event(request, job)
            except Exception as exc:
                job.outcome = "error"
                return error_response(request, 424, failure_message(exc), "generation")
            if event is None:
                return web.Response(status=499)
            if isinstance(event, TextDelta):
                sent += reply.add(event)
                continue
            job.outcome = "done"
            headers = self.relay.metrics.finished(job, event)
            released = sent + reply.finish(event)
            text = "".join(d.text for d in released)
            choice: dict[str, Any] = {"index": 0, "finish_reason": _finish(event)}
            if reply.chat:
                choice["message"] = {"role": "assistant", "content": text}
                choice["logprobs"] = self._logprobs(released) if req.logprobs else None
            else:
                choice["text"] = text
                choice["logprobs"] = None
            body = reply.envelope("chat.completion" if reply.chat else "text_completion", [choice])
            body["usage"] = _usage(event)
            return web.json_response(body, headers=headers)

    async def _stream(self, request, job: Job, req: OpenAIRequest, reply: Reply):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        kind = "chat.completion.chunk" if reply.chat else "text_completion"

        async def send(deltas: list[TextDelta], finish: str | None = None, first: bool = False) -> None:
            text = "".join(d.text for d in deltas)
            # TGI's completion chunks carry a string finish_reason: "" until the last one.
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish if reply.chat or finish else ""}
            if reply.chat:
                choice["delta"] = {"role": "assistant", "content": text}
                choice["logprobs"] = self._logprobs(deltas) if req.logprobs and deltas else None
            else:
                choice["text"] = text
                choice["logprobs"] = None
            chunk = reply.envelope(kind, [choice])
            if req.include_usage:
                chunk["usage"] = None
            await self.relay.write(request, response, sse(chunk, spaced=True))

        try:
            while True:
                try:
                    event = await next_event(request, job)
                except Exception as exc:
                    job.outcome = "error"
                    await self.relay.write(
                        request,
                        response,
                        sse(error_body(request.path, failure_message(exc), "generation"), spaced=True),
                    )
                    return response
                if event is None:
                    return response
                if isinstance(event, TextDelta):
                    released = reply.add(event)
                    if released:
                        await send(released)
                    continue
                job.outcome = "done"
                self.relay.metrics.finished(job, event)
                await send(reply.finish(event), _finish(event))
                if req.include_usage:
                    await self.relay.write(
                        request, response, sse({**reply.envelope(kind, []), "usage": _usage(event)}, spaced=True)
                    )
                await self.relay.write(request, response, b"data: [DONE]\n\n")
                return response
        except (ConnectionResetError, ConnectionError):
            return response


@dataclass
class Reply:
    """One reply's identity, and its tokens held back while they may be the start of a stop sequence."""

    id: str
    model: str
    chat: bool
    stops: tuple[str, ...]
    created: int = field(default_factory=lambda: int(time.time()))
    held: list[TextDelta] = field(default_factory=list)

    def add(self, delta: TextDelta) -> list[TextDelta]:
        """The tokens that can be sent now: all but those that may begin a stop sequence."""
        self.held.append(delta)
        text = "".join(d.text for d in self.held)
        keep_from = len(text)
        for stop in self.stops:
            for size in range(min(len(stop), len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    keep_from = min(keep_from, len(text) - size)
                    break
        released, used = [], 0
        while self.held and used + len(self.held[0].text) <= keep_from:
            used += len(self.held[0].text)
            released.append(self.held.pop(0))
        return released

    def finish(self, done: Done) -> list[TextDelta]:
        """What is left to send: the held tokens, cut where the stop sequence begins."""
        held, self.held = self.held, []
        if not done.stop_sequence:
            return held
        text = "".join(d.text for d in held)
        cut = text.find(done.stop_sequence)
        if cut < 0:
            return held
        out, used = [], 0
        for delta in held:
            if used >= cut:
                break
            piece = delta.text[: cut - used]
            out.append(delta if piece == delta.text else TextDelta(piece, delta.token_id, delta.logprob))
            used += len(delta.text)
        return out

    def envelope(self, kind: str, choices: list[dict]) -> dict:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }


def _finish(done: Done) -> str:
    return "length" if done.finish_reason == "length" else "stop"


def _usage(done: Done) -> dict:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }

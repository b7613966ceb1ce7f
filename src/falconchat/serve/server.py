"""`falconchat serve`: a text-generation-inference endpoint for a local model.

One engine thread runs generations one at a time, in FIFO order; aiohttp
handlers validate requests (serve/requests.py) before anything reaches it and
relay its token stream as TGI's JSON or server-sent events. A client that goes
away is dropped from the queue, or its generation is closed within a token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import sys
import time
from typing import TYPE_CHECKING

from falconchat import __version__
from falconchat.errors import ConfigError, FalconchatError, Overloaded
from falconchat.serve.engine import Engine, Job, ServerStopping
from falconchat.serve.generate_api import GenerateReplies, sse
from falconchat.serve.metrics import Metrics
from falconchat.serve.openai_api import OpenAIRoutes
from falconchat.serve.requests import (
    GenerateRequest,
    Limits,
    RequestInvalid,
    ShapeInvalid,
    check_length,
    parse_json,
    parse_request,
    resolve_max_new_tokens,
)

if TYPE_CHECKING:
    from falconchat.backends.base import InProcessModel

MAX_BODY_BYTES = 2_000_000
DISCONNECT_POLL_S = 0.1
GENERATION_PATHS = ("/", "/generate", "/generate_stream", "/v1/chat/completions", "/v1/completions")


# ---- the HTTP side -------------------------------------------------------------------------


def tgi_error(status: int, message: str, error_type: str):
    from aiohttp import web

    return web.json_response({"error": message, "error_type": error_type}, status=status)


class TgiServer:
    def __init__(
        self,
        backend: InProcessModel,
        *,
        model_id: str,
        api_key: str | None,
        max_waiting: int,
        debug: bool = False,
        log=sys.stderr,
    ):
        self.backend = backend
        self.model_id = model_id
        self.api_key = api_key
        self.debug = debug
        self.log = log
        context = backend.context_length
        self.limits = Limits(max_input_tokens=context - 1, max_total_tokens=context)
        self.engine = Engine(backend, max_waiting, self._note)
        self.metrics = Metrics(self.engine.load)
        self.active: set[Job] = set()  # jobs whose handlers are waiting on the engine
        self.replies = GenerateReplies(self)

    def app(self):
        from aiohttp import web

        @web.middleware
        async def middleware(request, handler):
            return await self._around(request, handler)

        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[middleware])
        app.router.add_post("/", self.compat_generate)
        app.router.add_post("/generate", self.generate)
        app.router.add_post("/generate_stream", self.generate_stream)
        app.router.add_get("/info", self.info)
        app.router.add_get("/health", self.health)
        app.router.add_get("/", self.health)  # as TGI: a load balancer's probe of the root
        app.router.add_get("/ping", self.health)  # SageMaker's health route, which TGI answers
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_get("/metrics", self.metrics_text)
        OpenAIRoutes(self).add_to(app)
        return app

    async def _around(self, request, handler):
        """Auth, TGI-shaped errors for aiohttp's own refusals, and one log line per request."""
        from aiohttp import web

        started = time.monotonic()
        request["tokens"] = 0
        request["outcome"] = ""
        try:
            # As TGI: the key guards what generates or reads input; what describes the server stays open.
            if self.api_key and request.method == "POST" and not self._authorized(request):
                response = tgi_error(
                    401, "Unauthorized: a valid `Authorization: Bearer` key is required", "authentication"
                )
            else:
                response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = tgi_error(413, f"the body is larger than {MAX_BODY_BYTES} bytes", "validation")
        except web.HTTPNotFound:
            response = web.Response(status=404)  # as TGI (axum): an unknown route is a bare 404
        except web.HTTPException as exc:
            response = tgi_error(exc.status, exc.reason, "validation")
        self._log(request, response.status, time.monotonic() - started)
        if request.path in GENERATION_PATHS and request.method == "POST":
            self.metrics.request(response.status, "generation" if request["outcome"] == "error" else None)
        return response

    def _authorized(self, request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), (self.api_key or "").encode())

    def _log(self, request, status: int, seconds: float) -> None:
        """Method, path, status, tokens, duration: never the prompt or the key."""
        outcome = f" {request['outcome']}" if request["outcome"] not in ("", "done") else ""
        self._note(f"{request.method} {request.path} {status} {request['tokens']} tokens {seconds:.2f}s{outcome}")

    def _note(self, line: str) -> None:
        try:
            self.log.write(line + "\n")
            self.log.flush()
        except (OSError, ValueError):
            pass

    # -- simple routes --

    async def metrics_text(self, request):
        from aiohttp import web

        return web.Response(text=self.metrics.text(), content_type="text/plain", headers={"Cache-Control": "no-cache"})

    async def health(self, request):
        from aiohttp import web

        return web.Response(status=200)

    async def info(self, request):
        from aiohttp import web

        return web.json_response(
            {
                "model_id": self.model_id,
                "model_sha": None,
                "model_dtype": "gguf",
                "model_device_type": "cpu",
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": self.engine.max_waiting + self.engine.workers,
                "max_best_of": 1,
                "max_stop_sequences": self.limits.max_stop_sequences,
                "max_input_tokens": self.limits.max_input_tokens,
                "max_input_length": self.limits.max_input_tokens,
                "max_total_tokens": self.limits.max_total_tokens,
                "max_client_batch_size": 1,
                "validation_workers": 1,  # required by TGI's Info schema; validation runs in the handlers
                "router": "falconchat-serve",
                "version": __version__,
                "sha": None,
                "docker_label": None,
            }
        )

    async def tokenize(self, request):
        from aiohttp import web

        try:
            payload = parse_json(await request.read()) if request.can_read_body else None
            if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), str) or not payload["inputs"]:
                raise RequestInvalid("`inputs` must be a non-empty string")
        except RequestInvalid as exc:
            return tgi_error(422, str(exc), "validation")
        pieces = await asyncio.get_running_loop().run_in_executor(None, self.backend.token_pieces, payload["inputs"])
        return web.json_response([{"id": i, "text": t, "start": a, "stop": b} for i, t, a, b in pieces])

    # -- generation --

    async def compat_generate(self, request):
        return await self._serve(request, stream=None)

    async def generate(self, request):
        return await self._serve(request, stream=False)

    async def generate_stream(self, request):
        return await self._serve(request, stream=True)

    async def _serve(self, request, stream: bool | None):
        payload = None
        try:
            payload = parse_json(await request.read())
            req = parse_request(payload, self.limits, stream=stream)
            req, prompt, input_tokens = await asyncio.get_running_loop().run_in_executor(None, self._prepare, req)
        except RequestInvalid as exc:
            streamed = stream if stream is not None else isinstance(payload, dict) and payload.get("stream") is True
            if streamed and not isinstance(exc, ShapeInvalid):
                return await self._stream_error(request, str(exc))
            return tgi_error(422, str(exc), "validation")
        job = Job(req, prompt, asyncio.get_running_loop())
        try:
            self.engine.submit(job)
        except Overloaded:
            return tgi_error(429, "Model is overloaded", "overloaded")
        self.active.add(job)
        try:
            if req.stream:
                return await self.replies.stream(request, job, input_tokens)
            return await self.replies.whole(request, job, compat=stream is None)
        finally:
            self.active.discard(job)
            if job.outcome == "cancelled":
                job.cancel()  # the engine drops it from the queue, or stops it within a token
            request["tokens"] = job.tokens
            request["outcome"] = job.outcome

    def shut_down(self) -> None:
        """Stopping the server: every waiting handler ends now (in the loop's thread)."""
        for job in list(self.active):
            job.cancel()
            job.events.put_nowait(ServerStopping("the server is shutting down"))

    async def _stream_error(self, request, message: str):
        """As TGI: a streamed request refused by validation is a 200 event stream of one error event."""
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(sse({"error": message, "error_type": "validation"}))
        await response.write_eof()
        return response

    def _prepare(self, req: GenerateRequest) -> tuple[GenerateRequest, str, int]:
        """The request with its `max_new_tokens` settled, the prompt (truncated to its last
        `truncate` tokens when asked) and its length, checked."""
        tokens = self.backend.tokens(req.inputs)
        prompt = req.inputs
        if req.truncate is not None and len(tokens) > req.truncate:
            tokens = tokens[-req.truncate :]
            prompt = self.backend.text(tokens)
        max_new = resolve_max_new_tokens(req.params.max_new_tokens, len(tokens), self.limits)
        check_length(len(tokens), max_new, self.limits)
        req = dataclasses.replace(req, params=req.params.with_changes(max_new_tokens=max_new))
        return req, prompt, len(tokens)

    async def _next(self, request, job: Job):
        """The engine's next event; None if the client has gone."""
        while True:
            transport = request.transport  # checked before every event: tokens may come faster than the poll
            if transport is None or transport.is_closing():
                return None
            try:
                item = await asyncio.wait_for(job.events.get(), DISCONNECT_POLL_S)
            except TimeoutError:
                continue
            if isinstance(item, Exception):
                raise item
            return item

    def _failure(self, exc: Exception) -> str:
        if isinstance(exc, ServerStopping):
            return str(exc)
        return exc.message if isinstance(exc, FalconchatError) else f"generation failed: {type(exc).__name__}"


# ---- running it ------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _one_line_protocol_errors(server: TgiServer) -> None:
    """aiohttp logs a request it cannot parse (a bad method, data after `Connection: close`)
    with a traceback that quotes the raw request — a prompt, perhaps. The client has its 400
    already: the log gets one line, and the traceback only with --debug."""
    import logging

    class OneLine(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.exc_info and not server.debug:
                server._note(f"refused a malformed HTTP request ({type(record.exc_info[1]).__name__})")
                return False
            return True

    logging.getLogger("aiohttp.server").addFilter(OneLine())


def serve(server: TgiServer, host: str, port: int, *, ready=None) -> int:
    """Run until SIGINT/SIGTERM; `ready(url)` is called once listening."""
    return asyncio.run(_serve(server, host, port, ready))


async def _serve(server: TgiServer, host: str, port: int, ready) -> int:
    import signal

    from aiohttp import web

    _one_line_protocol_errors(server)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = runner.addresses[0]
    server.engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        ready(f"http://{host}:{bound[1]}" if ":" not in host else f"http://[{host}]:{bound[1]}")
    try:
        await stop.wait()
    finally:
        server.shut_down()
        await loop.run_in_executor(None, server.engine.stop)  # the model is idle before anything is freed
        await runner.cleanup()
    return 0

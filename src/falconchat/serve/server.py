"""`falconchat serve`: a text-generation-inference endpoint for a local model.

This module assembles the app and runs it: auth, error bodies for aiohttp's own refusals and
one log line per request, a 429 for a generation request that comes in while
`--max-concurrent-requests` are taken and a 413 for one that says its body is too large (both
before the body is read), a 408 for a body that does not arrive within `--client-timeout` —
the middleware — then each API's routes (a connection whose request head has not arrived within
`--client-timeout` is closed: `_serve`):
generate_api.py (TGI's generate API), openai_api.py (the Messages API, `/v1/*`), status_api.py
(`/info`, `/health`, `/metrics`). The engine (engine.py) decodes up to `--max-batch-size`
requests together and queues the rest in FIFO order; the handlers validate before anything
reaches it and relay its token stream (relay.py). A client that goes away frees its place at
once: it is dropped from the queue, or its generation is closed within a token; so does one that
reads nothing of its stream for `--client-timeout` (its connection is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import signal
import socket
import time
from typing import IO, TYPE_CHECKING

from falconchat.errors import ConfigError, UsageError
from falconchat.serve.engine import Engine
from falconchat.serve.generate_api import GenerateAPI
from falconchat.serve.metrics import Metrics
from falconchat.serve.openai_api import OpenAIAPI
from falconchat.serve.relay import CLIENT_TIMEOUT_S, BodyTimedOut, Relay, error_response
from falconchat.serve.status_api import StatusAPI
from falconchat.serve.validation import Limits

if TYPE_CHECKING:
    from falconchat.backends.base import InProcessModel

MAX_BODY_BYTES = 2_000_000
SEND_BUFFER_BYTES = 16 * 1024  # per generation reply, in the kernel (Linux doubles it) and in asyncio
GENERATION_PATHS = ("/", "/generate", "/generate_stream", "/v1/chat/completions", "/v1/completions")


class TgiServer:
    def __init__(
        self,
        backend: InProcessModel,
        *,
        model_id: str,
        api_key: str | None,
        max_concurrent_requests: int,
        debug: bool,
        log: IO[str],  # the command's stderr: one line per request, notes, tracebacks with debug
        max_input_tokens: int | None = None,
        max_total_tokens: int | None = None,
        client_timeout: float = CLIENT_TIMEOUT_S,
    ):
        self.api_key = api_key
        self.debug = debug
        self.log = log
        self.engine = Engine(backend, max_concurrent_requests, self.note)
        self.metrics = Metrics(self.engine.load)
        self.relay = Relay(
            backend,
            model_id=model_id,
            limits=limits_for(backend.context_length, max_input_tokens, max_total_tokens),
            engine=self.engine,
            metrics=self.metrics,
            client_timeout=client_timeout,
        )

    def app(self):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        @web.middleware
        async def middleware(request, handler):
            return await self._around(request, handler)

        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[middleware])
        for api in (GenerateAPI(self.relay), StatusAPI(self.relay), OpenAIAPI(self.relay)):
            api.add_to(app)
        return app

    async def _around(self, request, handler):
        """Auth, error bodies for aiohttp's own refusals, and one log line per request."""
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        started = time.monotonic()
        request["tokens"] = 0
        request["outcome"] = ""
        try:
            generation = request.method == "POST" and request.path in GENERATION_PATHS
            # As TGI: the key guards what generates or reads input; what describes the server stays open.
            if self.api_key and request.method == "POST" and not self._authorized(request):
                message = "Unauthorized: a valid `Authorization: Bearer` key is required"
                response = error_response(request, 401, message, "authentication")
            elif generation and (request.content_length or 0) > MAX_BODY_BYTES:
                response = self._too_large(request)  # said by its length: refused before it is read
            elif generation and (refused := await self.relay.refusal(request)) is not None:
                response = refused  # overloaded: answered before the body is read
            else:
                if generation:
                    _bound_send_buffer(request)
                response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = self._too_large(request)
        except BodyTimedOut as exc:
            response = error_response(request, 408, str(exc), "validation")
            response.force_close()  # the rest of the body is not waited for
        except web.HTTPNotFound:
            response = web.Response(status=404)  # as TGI (axum): an unknown route is a bare 404
        except web.HTTPException as exc:
            response = error_response(request, exc.status, exc.reason, "validation")
        finally:
            self.relay.let_go(request)
        self._log(request, response.status, time.monotonic() - started)
        if request.path in GENERATION_PATHS and request.method == "POST":
            self.metrics.request(response.status, "generation" if request["outcome"] == "error" else None)
        return response

    def _too_large(self, request):
        response = error_response(request, 413, f"the body is larger than {MAX_BODY_BYTES} bytes", "validation")
        response.force_close()  # the body is not read
        return response

    def _authorized(self, request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), (self.api_key or "").encode())

    def _log(self, request, status: int, seconds: float) -> None:
        """Method, path, status, tokens, duration: never the prompt or the key."""
        outcome = f" {request['outcome']}" if request["outcome"] not in ("", "done") else ""
        self.note(f"{request.method} {request.path} {status} {request['tokens']} tokens {seconds:.2f}s{outcome}")

    def note(self, line: str) -> None:
        """One line in the server's log (stderr); a log that has gone away is not an error."""
        try:
            self.log.write(line + "\n")
            self.log.flush()
        except (OSError, ValueError):
            pass


def _bound_send_buffer(request) -> None:
    """A reply's send buffers are kept small — the kernel's (it grows it to megabytes otherwise)
    and asyncio's (64 kB before it waits) — so that a client that reads nothing of its stream is
    noticed within ~100 tokens with top tokens (a few hundred without) — its writes wait, its
    sequence is paused, and after `--client-timeout` it is dropped — instead of decoding into
    the buffers meanwhile (with 64 kB: ~380 tokens, 8% of the decoding in the hostile soak,
    docs/performance.md). A token stream needs a few kB a second; a whole reply of 100 kB takes
    a few round trips more."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES)


def limits_for(context_length: int, max_input_tokens: int | None, max_total_tokens: int | None) -> Limits:
    """TGI's `--max-input-tokens` and `--max-total-tokens`, within the model's context (the
    defaults: all of it, and one token less for the prompt)."""
    total = max_total_tokens or context_length
    if total > context_length:
        raise UsageError(f"--max-total-tokens {total} is more than the model's context ({context_length} tokens)")
    max_input = max_input_tokens or total - 1
    if max_input >= total:
        raise UsageError(f"--max-input-tokens ({max_input}) must be less than --max-total-tokens ({total})")
    return Limits(max_input_tokens=max_input, max_total_tokens=total)


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

    class OneLine(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.exc_info and not server.debug:
                server.note(f"refused a malformed HTTP request ({type(record.exc_info[1]).__name__})")
                return False
            return True

    logging.getLogger("aiohttp.server").addFilter(OneLine())


def serve(server: TgiServer, host: str, port: int, *, ready=None) -> int:
    """Run until SIGINT/SIGTERM; `ready(url)` is called once listening."""
    return asyncio.run(_serve(server, host, port, ready))


async def _serve(server: TgiServer, host: str, port: int, ready) -> int:
    from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

    _one_line_protocol_errors(server)
    # A request's head must arrive whole within --client-timeout of the connection opening or of
    # the previous reply (aiohttp's keep-alive timer: it closes a connection still waiting for a
    # whole head, and more bytes do not put it off), so a sender that trickles its headers, or
    # sends nothing, is dropped then, as nginx's client_header_timeout does; an idle kept-alive
    # connection goes after as long. aiohttp's default is an hour.
    runner = web.AppRunner(
        server.app(),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=2.0,
        keepalive_timeout=server.relay.client_timeout,
    )
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
        server.relay.shut_down()
        await loop.run_in_executor(None, server.engine.stop)  # the model is idle before anything is freed
        await runner.cleanup()
    return 0

"""`serve`: what both APIs share to relay a job to a response — the model's engine, limits and
metrics, the submit block (a job queued, or a 429), the engine's next event, the error bodies
(TGI's on the generate API, OpenAI's on `/v1/*`), server-sent events and the failure message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from falconchat.errors import FalconchatError, Overloaded
from falconchat.serve.engine import Engine, Job, ServerStopping
from falconchat.serve.metrics import Metrics
from falconchat.serve.validation import Limits

if TYPE_CHECKING:
    from falconchat.backends.base import InProcessModel

DISCONNECT_POLL_S = 0.1
RETRY_AFTER_S = 1  # what a refused client is told to wait before it asks again
REFUSALS_PER_S = 100  # 429s sent at most this often (see RefusalPace)
CLIENT_TIMEOUT_S = 30.0  # `--client-timeout`: a body must arrive, and each write be taken, within this
OPENAI_PREFIX = "/v1/"

# TGI's `error_type` -> the OpenAI API's (`type`, `code`), for the `/v1/*` routes.
OPENAI_ERRORS: dict[str, tuple[str, str | None]] = {
    "validation": ("invalid_request_error", None),
    "authentication": ("invalid_request_error", "invalid_api_key"),
    "not_found": ("invalid_request_error", "model_not_found"),
    "overloaded": ("requests", "rate_limit_exceeded"),
    "generation": ("server_error", None),
}


def error_body(path: str, message: str, error_type: str) -> dict:
    """TGI's flat `{"error", "error_type"}`; on `/v1/*` the OpenAI API's `{"error": {"message",
    "type", "param", "code"}}` (its SDKs read the message from there: a flat body reached them as
    a bare "Error code: 422"), with TGI's `error_type` kept beside it."""
    if not path.startswith(OPENAI_PREFIX):
        return {"error": message, "error_type": error_type}
    kind, code = OPENAI_ERRORS.get(error_type, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}, "error_type": error_type}


def error_response(request, status: int, message: str, error_type: str):
    from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

    return web.json_response(error_body(request.path, message, error_type), status=status)


def sse(payload: dict, *, spaced: bool = False) -> bytes:
    """One server-sent event: TGI writes `data:`, OpenAI `data: `."""
    return (b"data: " if spaced else b"data:") + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


class RefusalPace:
    """How long a 429 is held before it is sent: refusals go out at most `per_s` a second (one
    every 10 ms by default, at once when none went out just before); one that comes sooner
    waits its turn, never more than Retry-After. Clients that ask again the moment they are
    refused (ignoring Retry-After) are so paced to about `per_s` requests a second together,
    whatever their number, and turning them away costs the model's threads nothing measurable
    (unpaced, 32 such clients made ~2,200 refusals a second on two cores and the server
    answered 0.7x the tokens: docs/performance.md). A held refusal holds no place."""

    def __init__(self, per_s: float = REFUSALS_PER_S, most_s: float = RETRY_AFTER_S):
        self.interval = 1.0 / per_s
        self.most_s = most_s
        self.next_at = 0.0

    def delay(self) -> float:
        now = time.monotonic()
        at = min(max(now, self.next_at), now + self.most_s)
        self.next_at = at + self.interval
        return at - now


class BodyTimedOut(Exception):
    """A request's body did not arrive within the client timeout (a slow-loris sender): a 408."""


class ClientStalled(ConnectionResetError):
    """A client took nothing of its reply for the client timeout (a stream never read): it is
    treated as gone, as a client that closed its connection."""


def _reset_on_close(transport) -> None:
    """Close with a reset, dropping what the kernel still holds for the client: closed plainly,
    a connection whose client reads nothing keeps its full send buffer, and stays open on the
    client's side, until the kernel gives up on it (minutes)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def failure_message(exc: Exception) -> str:
    """What a client is told when a generation fails (never a traceback)."""
    if isinstance(exc, ServerStopping):
        return str(exc)
    return exc.message if isinstance(exc, FalconchatError) else f"generation failed: {type(exc).__name__}"


async def next_event(request, job: Job) -> Any:
    """The engine's next event; None if the client has gone; an engine failure is raised."""
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


class Relay:
    """The model behind both APIs, and the jobs whose handlers are waiting on it."""

    def __init__(
        self,
        backend: InProcessModel,
        *,
        model_id: str,
        limits: Limits,
        engine: Engine,
        metrics: Metrics,
        client_timeout: float = CLIENT_TIMEOUT_S,
    ):
        self.backend = backend
        self.client_timeout = client_timeout
        self.model_id = model_id
        self.limits = limits
        self.engine = engine
        self.metrics = metrics
        self.active: set[Job] = set()
        self.pace = RefusalPace()

    async def refusal(self, request):
        """The 429 (with Retry-After) for a generation request that comes in while every place is
        taken, before its body is read or checked, paced (RefusalPace): a refusal costs the model
        nothing; else None. No place is held while the body comes in (a slow sender must not hold
        one): `run` takes it."""
        if not self.engine.full():
            return None
        if (delay := self.pace.delay()) > 0:
            await asyncio.sleep(delay)
        return self._overloaded(request)

    def admit(self, request):
        """Hold a place for a request whose body has been read and checked; the 429 if none is free."""
        try:
            self.engine.admit()
        except Overloaded:
            return self._overloaded(request)
        request["place"] = True
        return None

    @staticmethod
    def _overloaded(request):
        response = error_response(request, 429, "Model is overloaded", "overloaded")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    async def read_body(self, request) -> bytes:
        """The request's body, which must arrive whole within the client timeout (BodyTimedOut)."""
        try:
            return await asyncio.wait_for(request.read(), self.client_timeout)
        except TimeoutError:
            raise BodyTimedOut(f"the body did not arrive within {self.client_timeout:g} s") from None

    async def write(self, request, response, data: bytes) -> None:
        """Send part of a streamed reply; a client that takes none of it for the client timeout is
        dropped (ClientStalled): its connection is closed and its generation stops within a token."""
        try:
            await asyncio.wait_for(response.write(data), self.client_timeout)
        except TimeoutError:
            self.engine.log(f"dropped a client that read nothing of its reply for {self.client_timeout:g} s")
            if request.transport is not None:
                _reset_on_close(request.transport)
                request.transport.abort()
            raise ClientStalled(f"the client read nothing for {self.client_timeout:g} s") from None

    def let_go(self, request) -> None:
        """The place of a request that ended without becoming a job (refused by validation, or gone)."""
        if request.get("place"):
            request["place"] = False
            self.engine.release()

    async def run(self, request, job: Job, reply: Callable[[Job], Awaitable[Any]]):
        """Queue `job` in its request's place and return `reply(job)`'s response; the place is free
        when the reply ends (a client that left: at once, and its job is skipped or stopped)."""
        if not request.get("place") and (refused := self.admit(request)) is not None:
            return refused
        request["place"] = False  # the job holds it now, until it ends
        self.engine.submit(job)
        self.active.add(job)
        try:
            return await reply(job)
        finally:
            self.active.discard(job)
            self.engine.finish(job, client_left=job.outcome == "cancelled")
            request["tokens"] = job.tokens
            request["outcome"] = job.outcome

    def shut_down(self) -> None:
        """Stopping the server: every waiting handler ends now (in the loop's thread)."""
        for job in list(self.active):
            job.cancel()
            job.events.put_nowait(ServerStopping("the server is shutting down"))

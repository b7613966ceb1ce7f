"""`ask` and the chat on a `[models.NAME]` with `endpoints = [...]`: replicas of one model.

One replica answers at a time, the same one for the whole conversation (its prompt prefix
is cached there); a connection refused, 5xx, 429 or timeout before the first event moves
the request to the next replica, which then keeps the conversation. A failure after the
first event is that reply's error: what was shown is never replayed. (`batch` spreads its
requests over the replicas itself: batch/replicas.py.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from falconchat.backends.base import Backend
from falconchat.errors import AuthRejected, EndpointError, Rejected, Unreachable
from falconchat.types import SamplingParams, TokenStream


def movable(exc: BaseException) -> bool:
    """The replica's own fault (unreachable, timed out, overloaded, a 5xx), not the request's."""
    return isinstance(exc, EndpointError) and not isinstance(exc, (Rejected, AuthRejected))


class FailoverBackend:
    def __init__(self, spec, opener) -> None:
        self.spec = spec
        self.name = spec.name
        self._opener = opener  # open_backend, for one replica's spec
        self.urls = list(spec.replicas)
        self.current = -1
        self._backend: Backend | None = None
        self._next()

    def _next(self) -> None:
        """Open the next replica that answers; the last one's error when none does."""
        last: EndpointError | None = None
        for _ in self.urls:
            self.current = (self.current + 1) % len(self.urls)
            try:
                backend = self._opener(replace(self.spec, endpoint=self.urls[self.current], replicas=()))
            except Unreachable as exc:
                last = exc
                continue
            # The one it leaves is closed only now: with every replica down, the chat keeps a
            # backend to try again with its next message.
            if self._backend is not None:
                self._backend.close()
            self._backend = backend
            return
        assert last is not None
        raise last

    @property
    def _live(self) -> Backend:
        assert self._backend is not None  # _next() opened one or raised
        return self._backend

    # The rest of the Backend protocol is the current replica's (declared, not forwarded by
    # name: backends.base.Backend is everything a caller may use).
    @property
    def prompt_format(self) -> str:
        return self._live.prompt_format

    @property
    def takes_messages(self) -> bool:
        return self._live.takes_messages

    @property
    def sees_images(self) -> bool:
        return self._live.sees_images

    def describe(self) -> str:
        return self._live.describe()

    @property
    def context_length(self) -> int:
        return self._live.context_length

    def count_tokens(self, text: str) -> int:
        return self._live.count_tokens(text)

    def count_message_tokens(self, messages: Sequence[dict]) -> int:
        return self._live.count_message_tokens(messages)

    def check(self) -> str:
        return self._live.check()

    def warm_up(self) -> None:
        self._live.warm_up()

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        return self._failover(lambda backend: backend.stream(prompt, params))

    def stream_messages(self, messages: Sequence[dict], params: SamplingParams) -> TokenStream:
        return self._failover(lambda backend: backend.stream_messages(messages, params))

    def _failover(self, start) -> TokenStream:
        for tries in range(1, len(self.urls) + 1):
            events = start(self._live)
            try:
                first = next(events)
            except StopIteration:
                return
            except EndpointError as exc:
                events.close()
                if not movable(exc) or tries == len(self.urls):
                    raise
                self._next()
                continue
            try:
                yield first
                yield from events
            finally:
                events.close()
            return

    def close(self) -> None:
        if self._backend is not None:
            self._live.close()

"""`ask` and the chat on a `[models.NAME]` with `endpoints = [...]`: replicas of one model.

One replica answers at a time, the same one for the whole conversation (its prompt prefix
is cached there); a connection refused, 5xx, 429 or timeout before the first event moves
the request to the next replica, which then keeps the conversation. A failure after the
first event is that reply's error: what was shown is never replayed. (`batch` spreads its
requests over the replicas itself: batch/replicas.py.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from falconchat.errors import AuthRejected, EndpointError, Rejected, Unreachable
from falconchat.types import TokenStream


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
        self._backend: Any = None
        self._next()

    def _next(self) -> None:
        """Open the next replica that answers; the last one's error when none does."""
        last: EndpointError | None = None
        for _ in self.urls:
            self.current = (self.current + 1) % len(self.urls)
            if self._backend is not None:
                self._backend.close()
                self._backend = None
            try:
                self._backend = self._opener(replace(self.spec, endpoint=self.urls[self.current], replicas=()))
                return
            except Unreachable as exc:
                last = exc
        assert last is not None
        raise last

    def __getattr__(self, name: str) -> Any:  # the rest of the Backend protocol: the current replica's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._backend, name)

    def stream(self, prompt: str, params) -> TokenStream:
        return self._failover(lambda backend: backend.stream(prompt, params))

    def stream_messages(self, messages, params) -> TokenStream:
        return self._failover(lambda backend: backend.stream_messages(messages, params))

    def _failover(self, start) -> TokenStream:
        for tries in range(1, len(self.urls) + 1):
            events = start(self._backend)
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
            self._backend.close()

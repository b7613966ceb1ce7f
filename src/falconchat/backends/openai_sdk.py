"""How the openai backend uses the `openai` SDK at scale (batch: thousands of requests, dozens
of workers, several replicas).

- One SDK client per server and credentials, shared by every OpenAIBackend of the process that
  talks to it: each client builds its own connection pool and TLS context (reading the
  certificate store: milliseconds of CPU), so 32 workers × 4 replicas paid that 128 times and
  never reused each other's connections. The SDK's client is safe to share between threads;
  the last backend to let go of it closes it.
- A streamed reply read as plain JSON chunks (`plain_stream`): the SDK's own stream builds a
  typed object of every chunk, about 0.1 ms of CPU a token, more than everything else falconchat
  does with it. The SDK still sends the request (retries, timeouts, errors) and splits the
  server-sent events; an error event mid-stream is its APIError, as before.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_shared: dict[tuple, list[Any]] = {}  # key -> [client, users]


def acquire(key: tuple, make) -> Any:
    """The client for `key` (made by `make()` the first time), counted as used once more."""
    with _lock:
        entry = _shared.get(key)
        if entry is None:
            entry = _shared[key] = [make(), 0]
        entry[1] += 1
        return entry[0]


def release(key: tuple, client: Any) -> None:
    """One user fewer; the last one closes the client (its connections)."""
    with _lock:
        entry = _shared.get(key)
        if entry is None or entry[0] is not client:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _shared[key]
    client.close()


def plain_stream(openai) -> type:
    """The SDK's Stream class, yielding each `data:` event as parsed JSON (no typed objects), and
    reading the body to its end after `data: [DONE]` so that the keep-alive connection goes back
    to the pool (a body closed early is a connection dropped)."""
    global _plain
    if _plain is None:

        class PlainStream(openai.Stream[dict]):
            def __stream__(self):
                events = self._iter_events()
                try:
                    for sse in events:
                        if sse.data.startswith("[DONE]"):
                            for _ in events:  # the end of the body (servers end it at once)
                                pass
                            break
                        data = sse.json()
                        if isinstance(data, dict) and data.get("error"):
                            error = data["error"]
                            message = error.get("message") if isinstance(error, dict) else None
                            raise openai.APIError(
                                message=message if isinstance(message, str) and message else "an error mid-stream",
                                request=self.response.request,
                                body=error,
                            )
                        yield data
                finally:
                    self.response.close()

        _plain = PlainStream
    return _plain


_plain: type | None = None

"""Several replicas of one model (`batch --endpoint A --endpoint B …`): probed once, then
each request goes to a healthy one — the one with the fewest requests in flight
(`least-busy`, the default) or the next in turn (`round-robin`).

A replica that fails (connection refused, 5xx, 429, a timeout) hands the request on to
another; one that refuses connections, or fails COOL_AFTER times in a row, is cooled down:
left out for a while (COOL_S, doubling while it keeps failing, up to MAX_COOL_S), then let
back in one request at a time until one succeeds (a circuit breaker's half-open state).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from falconchat.backends.probe import resolve
from falconchat.errors import FalconchatError, Unreachable, UsageError
from falconchat.text import safe_url

POLICIES = ("least-busy", "round-robin")
COOL_AFTER = 3  # failures in a row that cool a replica down (one refused connection is enough)
COOL_S = 2.0
MAX_COOL_S = 60.0


@dataclass
class Replica:
    spec: Any  # the ModelSpec resolved for this URL
    url: str  # as shown
    in_flight: int = 0
    requests: int = 0
    answered: int = 0
    tokens: int = 0
    errors: int = 0
    failures_in_row: int = 0
    cool_s: float = 0.0  # the next cooldown's length
    cooled_until: float = 0.0
    cooled_total_s: float = 0.0
    probing: bool = False  # back from a cooldown: one request at a time until one succeeds

    def stats(self) -> dict[str, Any]:
        return {
            "endpoint": self.url,
            "requests": self.requests,
            "answered": self.answered,
            "tokens": self.tokens,
            "errors": self.errors,
            "cooled_down_s": round(self.cooled_total_s, 3),
        }


class Pool:
    def __init__(self, replicas: list[Replica], policy: str = "least-busy", clock=time.monotonic):
        if policy not in POLICIES:
            raise UsageError(f"--policy must be least-busy or round-robin, not {policy!r}")
        self.replicas = replicas
        self.policy = policy
        self.clock = clock
        self._turn = 0
        self._lock = threading.Lock()

    def _usable(self, replica: Replica, now: float) -> bool:
        if now < replica.cooled_until:
            return False
        return not (replica.probing and replica.in_flight > 0)

    def pick(self, avoid: Replica | None = None) -> Replica:
        """A healthy replica for the next request, counted as in flight on it; not `avoid` (the
        one that just failed this request: least-busy would often pick it again, it has the
        fewest in flight) while another is healthy. When every one is cooled down, the one back
        soonest (the caller has backed off meanwhile)."""
        with self._lock:
            now = self.clock()
            usable = [r for r in self.replicas if self._usable(r, now)]
            if avoid is not None and any(r is not avoid for r in usable):
                usable = [r for r in usable if r is not avoid]
            if not usable:
                chosen = min(self.replicas, key=lambda r: r.cooled_until)
            elif self.policy == "round-robin":
                order = self.replicas[self._turn :] + self.replicas[: self._turn]
                chosen = next(r for r in order if r in usable)
                self._turn = (self.replicas.index(chosen) + 1) % len(self.replicas)
            else:
                chosen = min(usable, key=lambda r: (r.in_flight, r.requests))
            chosen.in_flight += 1
            chosen.requests += 1
            return chosen

    def others_usable(self, replica: Replica) -> bool:
        with self._lock:
            now = self.clock()
            return any(r is not replica and self._usable(r, now) for r in self.replicas)

    def succeeded(self, replica: Replica, tokens: int) -> None:
        with self._lock:
            replica.in_flight -= 1
            replica.answered += 1
            replica.tokens += tokens
            replica.failures_in_row = 0
            replica.cool_s = 0.0
            replica.probing = False

    def released(self, replica: Replica) -> None:
        """A request cancelled (the batch stopping): neither an answer nor a failure."""
        with self._lock:
            replica.in_flight -= 1
            replica.requests -= 1

    def failed(self, replica: Replica, exc: BaseException, *, its_own: bool) -> bool:
        """A request failed on `replica`; `its_own`: the replica's fault (refused, 5xx, 429,
        timeout), which counts toward cooling it down. True when it was cooled down now."""
        with self._lock:
            replica.in_flight -= 1
            replica.errors += 1
            if not its_own:
                return False
            replica.failures_in_row += 1
            if not (replica.probing or isinstance(exc, Unreachable) or replica.failures_in_row >= COOL_AFTER):
                return False
            now = self.clock()
            if now < replica.cooled_until:
                return False  # already cooled down by another request's failure
            replica.cool_s = min(MAX_COOL_S, replica.cool_s * 2 or COOL_S)
            replica.cooled_until = now + replica.cool_s
            replica.cooled_total_s += replica.cool_s
            replica.probing = True
            return True


def probe_replicas(spec, urls: list[str], notes) -> list[Replica]:
    """Each URL probed once (TGI or OpenAI-compatible, as `--endpoint` alone is). An unreachable
    one is left out with a note; replicas that disagree on the model are refused in one line."""
    seen: set[str] = set()
    for url in urls:
        if url.rstrip("/") in seen:
            raise UsageError(f"--endpoint {safe_url(url)} is given twice")
        seen.add(url.rstrip("/"))
    replicas: list[Replica] = []
    unreachable: list[tuple[str, FalconchatError]] = []
    for url in urls:
        try:
            # retries=0: a request its replica fails goes to another at once, not to the same one thrice
            replicas.append(Replica(resolve(replace(spec, endpoint=url, replicas=(), retries=0)), safe_url(url)))
        except Unreachable as exc:
            unreachable.append((safe_url(url), exc))
    if not replicas:
        raise unreachable[0][1]
    for url, _exc in unreachable:
        notes.write(f"cannot reach {url}: going on with the other {len(replicas)} replica(s)")
    served = {r.url: r.spec.remote_model or r.spec.name for r in replicas}
    if len(set(served.values())) > 1:
        listed = ", ".join(f"{url} serves {model!r}" for url, model in served.items())
        raise UsageError(
            f"the replicas disagree on the model: {listed}; start them under one served name "
            "(vLLM --served-model-name, llama-cpp-python --model_alias, TGI's model id)"
        )
    return replicas

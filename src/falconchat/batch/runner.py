"""`falconchat batch`: many prompts, N in flight, results written in input order.

Worker threads take items in input order. An endpoint's workers each own a
client (an HTTP session is not shared across threads); a model decoded here is
one backend that every worker shares, its engine decoding their prompts
together (as many as `concurrency_for` allowed). The main thread writes each
result as soon as every earlier one is written — so OUTPUT is always the input's
order, and a batch stopped anywhere left a prefix that `--resume` continues —
and draws the progress bar. Stopping (Ctrl-C, --fail-fast, a fatal error) is
closing the streams in flight: the model stops, nothing half-done is written.
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from falconchat.backends import open_backend
from falconchat.backends.registry import BACKENDS
from falconchat.batch.input import Item
from falconchat.batch.progress import Progress
from falconchat.batch.replicas import Pool, Replica
from falconchat.batch.rows import OwnRows, is_failed
from falconchat.conversation import Conversation
from falconchat.errors import (
    AuthRejected,
    ConfigError,
    EndpointError,
    FalconchatError,
    Overloaded,
    Rejected,
    Timeout,
    Unreachable,
)
from falconchat.exchange import answer
from falconchat.records import Collector, error_object
from falconchat.structured import check_reply
from falconchat.text import sanitize
from falconchat.types import Done

if TYPE_CHECKING:
    from falconchat.backends.base import Backend
    from falconchat.conversation_log import ConversationLog

BACKOFF_S = 1.0  # the first retry waits about this long; each next one twice as long
MAX_BACKOFF_S = 30.0
RETRYABLE = (Overloaded, Unreachable, Timeout)  # may pass: a busy or restarting replica
FATAL = (AuthRejected, ConfigError)  # the same for every item: stop rather than fail them all
JOIN_S = 2.0  # how long a stop waits for workers (a hung request is abandoned after it)


@dataclass(frozen=True)
class BatchOptions:
    input_path: str | None = None
    output: str | None = None
    concurrency: int | None = None
    retries: int = 4
    fail_fast: bool = False
    resume: bool = False
    strict: bool = False
    input_format: str = "auto"
    errors: str | None = None  # failed rows go here instead of OUTPUT
    # `batch --log`: a new logged conversation for each item (one per thread: called in the worker)
    log: Callable[[], ConversationLog] | None = None
    endpoints: tuple[str, ...] = ()  # several replicas of one model (`--endpoint` repeated)
    policy: str = "least-busy"
    stats: str | None = None  # --stats FILE: the summary as JSON
    # -f/--sf/-a: sources for every line (before each line's own `files`), read before anything runs
    files: tuple[str, ...] = ()
    system_files: tuple[str, ...] = ()
    images: tuple[str, ...] = ()


@dataclass
class Outcome:
    index: int
    record: dict | None  # None: cancelled, so not written
    ok: bool = False
    tokens: int = 0
    fatal: FalconchatError | None = None


class Cancelled(Exception):
    pass


def backoff(attempt: int) -> float:
    """Exponential, with jitter so that retries from many workers do not arrive together."""
    delay = min(BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S)
    return delay / 2 + random.uniform(0, delay / 2)


class Runner:
    def __init__(self, spec, items: list[Item], concurrency: int, options: BatchOptions, notes, rows=None, pool=None):
        self.spec = spec
        self.pool: Pool | None = pool  # several replicas (`--endpoint` repeated); None: one endpoint or model
        self.rows = rows or OwnRows()  # the shape of each row: ours, or OpenAI's
        self.items = items
        self.concurrency = max(1, min(concurrency, len(items)))
        self.options = options
        self.notes = notes
        self.results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._next = 0  # the next item a worker takes
        self._cutoff = math.inf  # items after this index are not started, and cancelled if running
        self.in_flight = 0
        # An overloaded answer halves how many may be in flight — once per round: answers to
        # requests sent before the last halving say nothing new — and each success adds
        # 1/limit back, up to -j (TCP's congestion control, for an endpoint's queue).
        self.limit = float(self.concurrency)
        self._slowed_at = -math.inf
        self._retrying = 0  # items back from a backoff, waiting for a place (they go first)
        self._answered_any = False
        self.streamed_tokens = 0  # every piece of reply streamed, finished items or not (tokens/s)
        self._count_lock = threading.Lock()
        self._shared: Backend | None = None  # the model decoded here that all workers use
        self._shared_users = 0

    # ---- the main thread: write in order -------------------------------------------------

    errors_out: Any = None  # an OutputFile for --errors FILE, set by the command

    def run(self, out) -> dict:
        stats: dict[str, Any] = {
            "items": len(self.items),
            "answered": 0,
            "failed": 0,
            "tokens": 0,
            "interrupted": False,
        }
        workers = [
            threading.Thread(target=self._work, name=f"falconchat-batch-{n}", daemon=True)
            for n in range(self.concurrency if self.items else 0)
        ]
        started = time.monotonic()
        pending: dict[int, Outcome] = {}
        written = 0
        with Progress(self, len(self.items), self.notes) as progress:
            try:
                for worker in workers:
                    worker.start()
                while written < self._limit():
                    for outcome in self._wait_for_outcomes():
                        if outcome.fatal is not None:
                            raise outcome.fatal  # once `finally` has stopped the workers; what is written stays
                        pending[outcome.index] = outcome
                    ready = []
                    while written in pending and written < self._limit():
                        ready.append(pending.pop(written))
                        written += 1
                    self._write(out, [o.record for o in ready if o.record is not None])
                    for outcome in ready:
                        self._count(outcome, stats)
                    progress.update(stats, time.monotonic() - started)
            except KeyboardInterrupt:
                stats["interrupted"] = True
            finally:
                self._stop(workers)
        stats["elapsed_s"] = time.monotonic() - started
        return stats

    def _write(self, out, records: list[dict]) -> None:
        """In input order; failed rows to --errors FILE when there is one (as OpenAI's Batch API)."""
        if self.errors_out is None:
            out.write_lines(records)
            return
        out.write_lines([r for r in records if not is_failed(r)])
        self.errors_out.write_lines([r for r in records if is_failed(r)])

    def _wait_for_outcomes(self) -> list[Outcome]:
        """What finished: at least one, or none after a short wait (to redraw the progress)."""
        try:
            outcomes = [self.results.get(timeout=0.25)]
        except queue.Empty:
            return []
        while True:
            try:
                outcomes.append(self.results.get_nowait())
            except queue.Empty:
                return outcomes

    @staticmethod
    def _count(outcome: Outcome, stats: dict) -> None:
        if outcome.record is None:
            return
        stats["answered" if outcome.ok else "failed"] += 1
        stats["tokens"] += outcome.tokens

    def _limit(self) -> int:
        with self._cond:
            return int(min(len(self.items), self._cutoff + 1))

    def _cut(self, index: float) -> None:
        with self._cond:
            self._cutoff = min(self._cutoff, index)
            self._cond.notify_all()  # wakes workers waiting to retry

    def _stop(self, workers: list[threading.Thread]) -> None:
        self._cut(-1)
        deadline = time.monotonic() + JOIN_S
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    # ---- the workers -------------------------------------------------------------------

    def _take(self) -> int | None:
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    (self.in_flight < int(self.limit) and not self._retrying)
                    or self._next >= len(self.items)
                    or self._next > self._cutoff
                )
            )
            if self._next >= len(self.items) or self._next > self._cutoff:
                return None
            self._next += 1
            self.in_flight += 1
            return self._next - 1

    def _cancelled(self, index: int) -> bool:
        return index > self._cutoff  # a plain read: the worst case is one more token

    def _open_backend(self):
        """An endpoint gets a client per worker; workers share one model decoded here, whose
        engine decodes their prompts together."""

        if BACKENDS[self.spec.backend].sequences is None:
            return open_backend(self.spec)
        with self._cond:
            if self._shared is None:
                self._shared = open_backend(self.spec, sequences=self.concurrency)
            self._shared_users += 1
            return self._shared

    def _close_backend(self, backend) -> None:
        if backend is not self._shared:
            backend.close()
            return
        with self._cond:
            self._shared_users -= 1
            last = self._shared_users == 0
            if last:
                self._shared = None
        if last and backend is not None:
            backend.close()

    def _work(self) -> None:
        backends: dict[int, Any] = {}  # this worker's client for each replica (0: the one endpoint or model)

        def backend_for(replica: Replica | None):
            key = id(replica) if replica is not None else 0
            if key not in backends:
                backends[key] = open_backend(replica.spec) if replica is not None else self._open_backend()
            return backends[key]

        try:
            while (index := self._take()) is not None:
                try:
                    if self.items[index].refused is not None:  # its error row, without a request
                        outcome = self._failure(index, self.items[index], None, 1)
                    else:
                        outcome = self._run_item(backend_for, index, self.items[index])
                except FATAL as exc:  # such as a backend that cannot be opened
                    self._cut(-1)
                    outcome = Outcome(index, None, fatal=exc)
                except BaseException as exc:  # a worker never dies without answering for its item
                    outcome = self._failure(index, self.items[index], exc, 1)
                self._release()
                self.results.put(outcome)
        finally:
            for key, backend in backends.items():
                if key == 0:
                    self._close_backend(backend)
                else:
                    backend.close()

    def _run_item(self, backend_for, index: int, item: Item) -> Outcome:
        attempt, moves = 1, 0
        failed_on: Replica | None = None  # the replica this item just failed on: another, if healthy
        while True:
            sent = time.monotonic()
            replica = self.pool.pick(avoid=failed_on) if self.pool is not None else None
            try:
                try:
                    reply, done, notes, reasoning = self._answer(backend_for(replica), index, item)
                except BaseException as exc:
                    failed_on = replica
                    if replica is not None and self._moved(replica, exc, item):
                        attempt, moves = attempt + 1, moves + 1  # another replica, at once: not a retry
                        if self._cancelled(index):
                            return Outcome(index, None)
                        continue
                    raise
                if replica is not None and self.pool is not None:
                    self.pool.succeeded(replica, done.completion_tokens)
                # Structured output fails closed: a reply that does not validate is this item's error.
                data = check_reply(reply, item.params.constraint, cut=done.finish_reason == "length")
            except Cancelled:
                return Outcome(index, None)
            except FATAL as exc:
                self._cut(-1)  # no worker starts another item
                return Outcome(index, None, fatal=exc)
            except RETRYABLE as exc:
                if isinstance(exc, Overloaded):
                    self._slow_down(sent)
                retries = attempt - 1 - moves  # moves to another replica are not retries
                if retries >= self.options.retries and isinstance(exc, Unreachable) and not self._answered_any:
                    # Never reached in this run (a wrong URL, a cluster down): every item would spend
                    # its retries the same way. Stop; --resume continues once it is up.
                    self._cut(-1)
                    return Outcome(
                        index,
                        None,
                        fatal=Unreachable(
                            f"{exc.message}; the batch stopped before any answer (--resume continues it)"
                        ),
                    )
                if retries >= self.options.retries:
                    return self._failure(index, item, exc, attempt)
                delay = backoff(retries + 1)
                self.notes.verbose(
                    f"line {item.line}: {exc.message}; retry {retries + 1} of {self.options.retries} in {delay:.1f}s"
                )
                if self._pause(index, delay):
                    return Outcome(index, None)
                attempt += 1
                continue
            except Exception as exc:
                return self._failure(index, item, exc, attempt)
            self._speed_up()
            self._answered_any = True
            record = self.rows.answer(
                item, sanitize(reply), done, attempt, data, sanitize(reasoning) if reasoning else "", notes
            )
            return Outcome(index, record, ok=True, tokens=done.completion_tokens)

    def _moved(self, replica: Replica, exc: BaseException, item: Item) -> bool:
        """Account a failed request to its replica; True when the item goes to another one now:
        the replica's own fault (refused, 5xx, 429, timeout), and another is healthy."""
        assert self.pool is not None
        if isinstance(exc, Cancelled):
            self.pool.released(replica)
            return False
        its_own = isinstance(exc, RETRYABLE) or (
            isinstance(exc, EndpointError) and not isinstance(exc, (Rejected, AuthRejected))
        )
        if self.pool.failed(replica, exc, its_own=its_own):
            self.notes.write(
                f"{replica.url} failed ({error_object(exc)['message']}): left out for {replica.cool_s:.0f}s"
            )
        if its_own and self.pool.others_usable(replica):
            self.notes.verbose(
                f"line {item.line}: {error_object(exc)['message']}; moved from {replica.url} to another replica"
            )
            return True
        return False

    def _failure(self, index: int, item: Item, exc: BaseException | None, attempts: int) -> Outcome:
        """The item's error row; `exc` None: the line itself was refused (`item.refused`)."""
        if self.options.fail_fast:
            self._cut(index)  # later items stop now; earlier ones in flight finish
        record = self.rows.refused(item) if exc is None else self.rows.failure(item, exc, attempts)
        return Outcome(index, record)

    def _slow_down(self, sent: float) -> None:
        with self._cond:
            if sent >= self._slowed_at and self.limit > 1:
                self.limit, self._slowed_at = max(1.0, self.limit / 2), time.monotonic()
                self.notes.verbose(f"the endpoint is overloaded: at most {int(self.limit)} requests in flight now")

    def _speed_up(self) -> None:
        with self._cond:
            if self.limit < self.concurrency:
                self.limit = min(float(self.concurrency), self.limit + 1 / self.limit)
                self._cond.notify_all()

    def _release(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()  # a worker may be waiting for a place

    def _pause(self, index: int, seconds: float) -> bool:
        """Leave the item's place for a backoff (a retrying item must not hold one while the
        endpoint is overloaded), then wait for a place. True when cancelled meanwhile; the
        item counts as in flight again either way, for the worker's one release."""
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._cancelled(index), timeout=seconds)
            self._retrying += 1
            self._cond.wait_for(lambda: self._cancelled(index) or self.in_flight < int(self.limit))
            self._retrying -= 1
            self.in_flight += 1
            self._cond.notify_all()
            return self._cancelled(index)

    def _streamed(self) -> None:
        with self._count_lock:
            self.streamed_tokens += 1

    def _answer(self, backend, index: int, item: Item) -> tuple[str, Done, list[str], str]:
        """One attempt through the same exchange as `ask` and the REPL (the same prompt,
        trimming and stop handling): the reply, its Done, any notes it gave, its reasoning."""

        notes: list[str] = []
        thoughts = Collector()
        sink = _sink(lambda: self._cancelled(index), self._streamed)
        log = self.options.log() if self.options.log is not None else None
        try:
            done = answer(
                Conversation(system=item.system, turns=list(item.history)),
                backend,
                item.message,
                item.params,
                sink,
                notice=notes.append,
                reasoning=thoughts,
                log=log,
            )
        finally:
            if log is not None:
                log.close()
        return sink.text, done, notes, thoughts.text


class _Sink(Collector):
    """A reply writer that keeps the text and counts each piece (a token, as the stream
    delivers them) for the live tokens/s; for a cancelled item it raises out of the stream,
    which closes it (the model stops within a token)."""

    def __init__(self, cancelled, streamed) -> None:
        super().__init__()
        self.cancelled = cancelled
        self.streamed = streamed

    def write(self, text: str) -> None:
        if self.cancelled():
            raise Cancelled()
        self.streamed()
        super().write(text)


def _sink(cancelled, streamed) -> _Sink:
    return _Sink(cancelled, streamed)

"""`serve`'s engine: jobs taken in FIFO order by as many worker threads as the
backend decodes sequences together (one for the single-sequence path).

A request that comes in while every place is taken is refused before its body is read (`full`:
a refusal costs nothing else); one whose body has been read and checked holds a place (`admit`)
until its handler is done with it (`finish`); at most `max_concurrent` places, as TGI's
`--max-concurrent-requests`. A body still coming in holds none (a slow sender blocks nobody). Handlers submit Jobs; a worker
streams each job's events back to the handler's event loop. A job whose client left frees its
place at once and is skipped, or is stopped within a token (or between batches of a long prompt).
A job whose handler falls behind (its client reads nothing) is not decoded until it catches up,
and after STAND_IN_AFTER_S a worker is started in its place for as long as it stays stalled, so
that jobs keep reaching the model (which sets the stalled sequence aside for them:
backends/llama_batch.py).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from falconchat.errors import Overloaded
from falconchat.serve.generate_requests import GenerateRequest
from falconchat.types import TextDelta

if TYPE_CHECKING:
    from falconchat.backends.base import InProcessModel

BACKLOG_EVENTS = 16  # events a handler may have not yet taken before its job's worker waits
BACKLOG_POLL_S = 0.02
STAND_IN_AFTER_S = 1.0  # a job's handler behind this long: another worker takes the next job


@dataclass(eq=False)
class Job:
    request: GenerateRequest
    prompt: str
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    tokens: int = 0  # generated so far (engine thread)
    outcome: str = "cancelled"  # set by the handler: done, error, or cancelled (the client left)
    tokens_at_cancel: int = 0
    dropped: bool = False  # its client left while it waited: a worker skips it (engine lock)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None  # when a worker took it (engine thread)

    def cancel(self) -> None:
        self.tokens_at_cancel = self.tokens
        self.cancelled.set()


class ServerStopping(Exception):
    pass


class Engine:
    def __init__(self, backend: InProcessModel, max_concurrent: int, log):
        self.backend = backend
        self.max_concurrent = max_concurrent  # places: running and waiting requests together
        self.log = log
        self._jobs: queue.Queue[Job | None] = queue.Queue()  # FIFO: first come, first served
        self._held = 0  # places: requests about to be queued, waiting or running
        self._waiting = 0  # jobs queued, not yet running
        self._running: set[Job] = set()
        self._lock = threading.Lock()
        self.workers = backend.sequences
        self._threads = [
            threading.Thread(target=self._run, name=f"falconchat-engine-{n}", daemon=True) for n in range(self.workers)
        ]
        self._stalled = 0  # jobs whose handler has been behind STAND_IN_AFTER_S: a worker stands in for each

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Cancel what runs and waits, and wait for the workers: the model must not be
        freed while it is still in use. (A prompt being read finishes its current batch first.)"""
        with self._lock:
            for job in self._running:
                job.cancel()
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            if thread.is_alive():
                thread.join()

    def load(self) -> tuple[int, int]:
        """(running, waiting) jobs now."""
        with self._lock:
            return len(self._running), self._waiting

    def full(self) -> bool:
        """Every place is taken (a request coming in now is refused before its body is read)."""
        with self._lock:
            return self._held >= self.max_concurrent

    def admit(self) -> None:
        """Hold a place for a request that has just come in, or raise Overloaded: all are taken."""
        with self._lock:
            if self._held >= self.max_concurrent:
                raise Overloaded("the queue is full")
            self._held += 1

    def release(self) -> None:
        """Give back the place of an admitted request that never became a job (refused, or gone)."""
        with self._lock:
            self._held -= 1

    def submit(self, job: Job) -> None:
        """Queue the job of an admitted request, in its place."""
        with self._lock:
            self._waiting += 1
        self._jobs.put(job)

    def finish(self, job: Job, *, client_left: bool) -> None:
        """The handler of `job` is done with it: its place is free now. If its client left, a
        waiting job is skipped when its turn comes, and a running one stops within a token."""
        with self._lock:
            self._held -= 1
            if client_left and job.started is None and not job.dropped:
                job.dropped = True
                self._waiting -= 1
        if client_left:
            job.cancel()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                if not job.dropped:
                    self._waiting -= 1  # and running, in the same step: a job is always counted once
                if job.dropped or job.cancelled.is_set():
                    self.log("generation cancelled before it started (the client left the queue)")
                    continue
                job.started = time.monotonic()
                self._running.add(job)
            try:
                self._generate(job)
            finally:
                with self._lock:
                    self._running.discard(job)
            if self._retire():
                return

    def _wait_for_reader(self, job: Job) -> None:
        """Hold the next event while the handler is `BACKLOG_EVENTS` behind (its client reads
        nothing: its writes wait): the backend, not pulled, pauses the sequence, so a stalled
        client costs no decoding until --client-timeout drops it. Stalled STAND_IN_AFTER_S, the
        job counts as stalled, and a worker stands in for it until it goes on, so that it holds
        up no other request (a stand-in for one job only left the others one worker short
        for the rest of the timeout: the hostile soak's clients got 0.8x)."""
        since = time.monotonic()
        stalled = False
        try:
            while job.events.qsize() >= BACKLOG_EVENTS and not job.cancelled.is_set():
                # Only a batching backend takes more requests than it decodes (the single path, one).
                if not stalled and self.workers > 1 and time.monotonic() - since >= STAND_IN_AFTER_S:
                    self._stall(+1)
                    stalled = True
                time.sleep(BACKLOG_POLL_S)
        finally:
            if stalled:
                self._stall(-1)

    def _stall(self, change: int) -> None:
        """One job more (+1) or fewer (-1) stalled; a worker is started while fewer than
        `workers` are free of stalled jobs (one too many retires after its job: `_retire`)."""
        with self._lock:
            self._stalled += change
            if len(self._threads) - self._stalled >= self.workers:
                return
            thread = threading.Thread(target=self._run, name="falconchat-engine-stand-in", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _retire(self) -> bool:
        """After a job: whether this worker is one too many now (the job it stood in for goes on,
        or has ended)."""
        with self._lock:
            if len(self._threads) <= self.workers + self._stalled:
                return False
            self._threads.remove(threading.current_thread())
            return True

    def _generate(self, job: Job) -> None:
        def send(item) -> None:
            try:
                job.loop.call_soon_threadsafe(job.events.put_nowait, item)
            except RuntimeError:  # the server's loop has closed: nobody is listening
                job.cancel()

        request = job.request
        stream = self.backend.generate(
            job.prompt,
            request.params,
            request.stops,
            logprobs=True,
            should_stop=job.cancelled.is_set,
            top_n=request.top_n_tokens,
        )
        try:
            for event in stream:
                self._wait_for_reader(job)
                if job.cancelled.is_set():
                    break
                if isinstance(event, TextDelta):
                    job.tokens += 1
                send(event)
            if job.cancelled.is_set():
                after = job.tokens - job.tokens_at_cancel
                self.log(f"generation cancelled after {job.tokens} tokens ({after} after the client left)")
        except Exception as exc:  # the model failed: the client gets a 424 "generation" error
            send(exc)
        finally:
            stream.close()  # stops decoding now if the job was cancelled

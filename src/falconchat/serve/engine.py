"""`serve`'s engine: jobs taken in FIFO order by as many worker threads as the
backend decodes sequences together (one for the single-sequence path).

Handlers submit Jobs; a worker streams each job's events back to the
handler's event loop. A cancelled job is skipped, or stopped within a token
(or between batches of a long prompt).
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
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None  # when a worker took it (engine thread)

    def cancel(self) -> None:
        self.tokens_at_cancel = self.tokens
        self.cancelled.set()


class ServerStopping(Exception):
    pass


class Engine:
    def __init__(self, backend: InProcessModel, max_waiting: int, log):
        self.backend = backend
        self.max_waiting = max_waiting
        self.log = log
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._waiting = 0
        self._running: set[Job] = set()
        self._lock = threading.Lock()
        self.workers = backend.sequences
        self._threads = [
            threading.Thread(target=self._run, name=f"falconchat-engine-{n}", daemon=True) for n in range(self.workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Cancel what runs and waits, and wait for the workers: the model must not be
        freed while it is still in use. (A prompt being read finishes its current batch first.)"""
        with self._lock:
            for job in self._running:
                job.cancel()
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def load(self) -> tuple[int, int]:
        """(running, waiting) jobs now."""
        with self._lock:
            return len(self._running), self._waiting

    def submit(self, job: Job) -> None:
        """Take a job if a worker is free or fewer than `max_waiting` wait (0: no queue, only free places)."""
        with self._lock:
            if self._waiting + len(self._running) >= self.workers + self.max_waiting:
                raise Overloaded("the queue is full")
            self._waiting += 1
        self._jobs.put(job)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self._waiting -= 1  # and running, in the same step: a job is always counted once
                if job.cancelled.is_set():
                    self.log("generation cancelled before it started (the client left the queue)")
                    continue
                job.started = time.monotonic()
                self._running.add(job)
            try:
                self._generate(job)
            finally:
                with self._lock:
                    self._running.discard(job)

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

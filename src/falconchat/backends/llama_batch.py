"""Continuous batching for the local model: many sequences decoded together.

One llama.cpp context that holds up to `sequences` sequences, each with its
own part of the KV cache, and one scheduling thread. Each step decodes one token
for every running sequence in a single batch, and reads waiting prompts in
chunks within the same steps, so replies keep flowing while a long prompt is
read. Callers get raw tokens through a thread-safe queue; closing their
iterator cancels the sequence, whose cells are freed at the next step. A
sequence whose caller falls `BACKLOG_TOKENS` behind is paused until it reads;
paused for `SET_ASIDE_AFTER_S` while requests wait, it is set aside — its
sequence goes to the next request — and it comes back, its tokens read again,
once its caller has caught up (a client that reads nothing holds no place).

A finished sequence is free for the next request at once, and leaves its
tokens in its cells, so that the next turn of the same conversation starts
from its cached prefix when it lands there again. A cancelled sequence's
cells are cleared at once. Requests wait for a free sequence in FIFO order.

This module is the scheduling: what each step decodes, who waits, who is set aside. The
records it schedules (a caller's `Request`, a sequence's `Slot`) are in llama_slots.py.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from falconchat.backends.llama_sampling import common_prefix, log_softmax_at, make_sampler, sample_token
from falconchat.backends.llama_slots import Request, Slot
from falconchat.errors import FalconchatError
from falconchat.types import SamplingParams

if TYPE_CHECKING:
    from falconchat.backends.base import DecodeThreads

BATCH_TOKENS = 256  # tokens per decode step: running sequences first, then prompt chunks
POLL_S = 0.05  # how often a waiting caller checks its own should_stop
# A sequence whose caller has this many tokens not yet taken is paused (not decoded) until it takes
# some: a reader that stalls (serve's client that reads nothing of its stream) costs no decoding.
BACKLOG_TOKENS = 16
PAUSED_WAIT_S = 0.01  # every running sequence paused: how long the engine waits before looking again
SET_ASIDE_AFTER_S = 1.0  # a sequence paused this long gives its place to a waiting request

_END = object()  # the sequence has finished (or was cancelled): no more tokens


class BatchEngine:
    """Owns its llama.cpp context; `llm` (a loaded `llama_cpp.Llama`) lends it the model."""

    def __init__(self, llm, sequences: int, context: int, threads: DecodeThreads):
        import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)

        self._llama_cpp = llama_cpp
        self._llm = llm  # the model must outlive this context
        self.sequences = sequences
        self.context = context  # cells per sequence: what one conversation (prompt and reply) can hold
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context * sequences
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = sequences
        self._policy = threads  # the cores other programs leave free, looked at again as it decodes
        self._threads_now = threads.fixed or threads.cores
        params.n_threads = params.n_threads_batch = self._threads_now
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        # A cache of its own per sequence: in one shared pool, a sequence's cells end up out of
        # order once others free theirs, and attention then adds them up in another order,
        # which changes the numbers (and greedy replies) with the company a sequence keeps.
        params.kv_unified = False
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self._ctx:
            raise FalconchatError(f"cannot make a context of {context} tokens for {sequences} sequences")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._vocab = llm._model.vocab
        self._n_vocab = llm.n_vocab()
        self._slots = [Slot(seq_id) for seq_id in range(sequences)]
        self._waiting: collections.deque[Request] = collections.deque()
        self._set_aside: list[Request] = []  # paused sequences that gave their place up
        self._wake = threading.Condition()
        self._closing = False
        self._outbox: list[tuple[Request, object]] | None = None  # what a step hands its callers at its end
        self.prompt_tokens_read = 0  # prompt tokens decoded (a reused prefix is not read again)
        self._thread = threading.Thread(target=self._run, name="falconchat-batch-engine", daemon=True)
        self._thread.start()

    # -- callers' side ---------------------------------------------------------------------

    def tokens(
        self,
        tokens: list[int],
        params: SamplingParams,
        max_new: int,
        *,
        seed: int,
        logprobs: bool = False,
        should_stop: Callable[[], bool] | None = None,
        grammar: str | None = None,
        top_n: int = 0,
    ) -> Iterator[tuple[int, float | None, tuple[tuple[int, float], ...]]]:
        """(token, logprob, top) as the engine samples them, end-of-generation token included;
        `top` is the `top_n` most likely (token, logprob) of the same step (empty unless asked).

        Ends by itself at end-of-generation or after `max_new` tokens; closing it
        (or `should_stop` turning true) cancels the sequence. `grammar` (GBNF) holds this
        sequence, and only this one, to a grammar; one that does not parse is an InputError.
        """
        # Built here, in the caller's thread: a grammar that fails to parse fails this call only.
        sampler = make_sampler(self._llm, params, seed, grammar)
        request = Request(list(tokens), params, max_new, logprobs or top_n > 0, top_n, sampler)
        with self._wake:
            if self._closing:
                request.close_sampler()
                raise FalconchatError("the local model is shutting down")
            self._waiting.append(request)
            self._wake.notify()
        try:
            while True:
                try:
                    item = request.out.get(timeout=POLL_S)
                except queue.Empty:
                    if should_stop is not None and should_stop():
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._cancel(request)

    def load(self) -> tuple[int, int]:
        """(running, waiting) requests, as the scheduling thread last left them (one set aside
        waits, for its caller to read)."""
        with self._wake:
            running = sum(slot.request is not None for slot in self._slots)
            return running, len(self._waiting) + len(self._set_aside)

    def _cancel(self, request: Request) -> None:
        with self._wake:
            request.cancelled.set()
            self._wake.notify()

    def close(self) -> None:
        """Stop the scheduling thread (ending every stream) and free the context."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        self._llama_cpp.llama_batch_free(self._batch)
        self._llama_cpp.llama_free(self._ctx)

    # -- the scheduling thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._schedule()
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            with self._wake:
                self._closing = True
            self._end_all(FalconchatError(f"the local model failed: {exc}"))
            raise

    def _schedule(self) -> None:
        while True:
            with self._wake:
                self._drop_cancelled()
                self._admit()
                while not self._closing and not any(slot.request for slot in self._slots):
                    # One set aside comes back when its caller reads: look again soon.
                    self._wake.wait(PAUSED_WAIT_S if self._set_aside else None)
                    self._drop_cancelled()
                    self._admit()
                if self._closing:
                    break
            self._adapt_threads()
            self._step()
        self._end_all(FalconchatError("the local model is shutting down"))

    def _adapt_threads(self) -> None:
        """Decode with the cores other programs leave free (backends/threads.py), looked at
        about twice a second: a thread descheduled by a busy program stalls the others."""
        if not self._policy.due():
            return
        threads = self._policy.threads()
        if threads != self._threads_now:
            self._llama_cpp.llama_set_n_threads(self._ctx, threads, threads)
            self._threads_now = threads

    def _end_all(self, error: FalconchatError) -> None:
        for slot in self._slots:
            if slot.request is not None:
                slot.request.close_sampler()
                slot.request.out.put(error)
                slot.request = None
        with self._wake:
            for request in [*self._waiting, *self._set_aside]:
                request.close_sampler()
                request.out.put(error)
            self._waiting.clear()
            self._set_aside.clear()

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.request is not None and slot.request.cancelled.is_set():
                self._finish(slot, _END, keep=False)
        for request in [*self._waiting, *self._set_aside]:
            if request.cancelled.is_set():
                request.close_sampler()
        self._waiting = collections.deque(r for r in self._waiting if not r.cancelled.is_set())
        self._set_aside = [r for r in self._set_aside if not r.cancelled.is_set()]

    def _admit(self) -> None:
        """Give waiting requests free sequences, in FIFO order: first those set aside whose
        callers have caught up (they came first), then the others. A sequence paused for
        SET_ASIDE_AFTER_S is set aside for a request that finds none free."""
        caught_up = [r for r in self._set_aside if r.out.qsize() < BACKLOG_TOKENS]
        if caught_up:
            self._set_aside = [r for r in self._set_aside if r not in caught_up]
            self._waiting.extendleft(reversed(caught_up))
        while self._waiting and not any(slot.request is None for slot in self._slots):
            stalled = [s for s in self._slots if _paused_for(s, SET_ASIDE_AFTER_S)]
            if not stalled:
                break
            self._put_aside(min(stalled, key=lambda s: s.paused_since or 0.0))
        while self._waiting:
            idle = [slot for slot in self._slots if slot.request is None]
            if not idle:
                return
            request = self._waiting.popleft()
            self._start(_choose(idle, request.tokens), request)

    def _start(self, slot: Slot, request: Request) -> None:
        # Reuse the cached prefix, but always decode at least the last prompt token (for its
        # logits) — unless the request comes back from being set aside: its next token is known.
        last = len(request.tokens) if request.resume else len(request.tokens) - 1
        reused = min(common_prefix(slot.resident, request.tokens), last)
        self._llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, reused, -1)
        slot.resident = slot.resident[:reused]
        slot.request = request
        slot.fed = reused
        slot.next_token = None
        slot.generated = 0
        slot.paused_since = None
        slot.sampler = request.sampler
        self._resume_when_read(slot)

    def _resume_when_read(self, slot: Slot) -> None:
        """A request back from being set aside goes on where it stopped once its tokens are read."""
        request = slot.request
        if request is not None and request.resume is not None and not slot.prefilling:
            slot.next_token, slot.generated = request.resume
            request.resume = None

    def _put_aside(self, slot: Slot) -> None:
        """Give a paused sequence's place up: its request keeps its sampler (its state) and the
        tokens so far, and waits for its caller; its cells stay as a cache until reused."""
        request = slot.request
        assert request is not None and slot.next_token is not None  # only paused ones
        request.tokens = list(slot.resident)
        request.resume = (slot.next_token, slot.generated)
        self._set_aside.append(request)
        slot.request = None
        slot.sampler = None
        slot.next_token = None
        slot.paused_since = None
        slot.last_used = time.monotonic()

    def _forget(self, slot: Slot) -> None:
        self._llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        slot.resident = []

    def _finish(self, slot: Slot, last, *, keep: bool) -> None:
        """End the slot's request; its cells stay as a cache (keep) or are freed at once."""
        if slot.request is not None:
            slot.request.close_sampler()  # before the caller hears of the end: it may drop the request
            self._send(slot.request, last)
        slot.request = None
        slot.sampler = None
        slot.next_token = None
        slot.last_used = time.monotonic()
        if not keep:
            self._forget(slot)

    def _step(self) -> None:
        """One llama_decode: a token for each running sequence, then prompt chunks."""
        batch = self._batch
        outputs: list[tuple[Slot, int]] = []  # which batch rows have logits to sample from
        n = 0

        def add(slot: Slot, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = len(slot.resident)
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq_id
            batch.logits[n] = logits
            if logits:
                outputs.append((slot, n))
            slot.resident.append(token)
            n += 1

        # Slots are only ever changed by this thread; callers touch only the waiting queue and flags.
        slots = [slot for slot in self._slots if slot.request is not None]
        for slot in slots:
            if slot.next_token is None:
                continue
            if _reader_behind(slot):
                slot.paused_since = slot.paused_since or time.monotonic()
                continue
            slot.paused_since = None
            add(slot, slot.next_token, True)
            slot.next_token = None
        for slot in slots:
            while slot.prefilling and n < BATCH_TOKENS and slot.request is not None:
                token = slot.request.tokens[slot.fed]
                slot.fed += 1
                self.prompt_tokens_read += 1
                resuming = slot.request.resume is not None  # its next token is known: no logits
                add(slot, token, not slot.prefilling and not resuming)
            self._resume_when_read(slot)
        if n == 0:  # every running sequence is paused: their callers are behind
            with self._wake:
                self._wake.wait(PAUSED_WAIT_S)  # a new request or a cancel wakes it sooner
            return
        batch.n_tokens = n
        status = self._llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            failure = FalconchatError(f"the local model failed (llama_decode returned {status})")
            for slot in slots:
                self._finish(slot, failure, keep=False)
            return
        # Tokens go to their callers once every row is sampled: a caller woken mid-way takes
        # the GIL from this thread at its next call into llama.cpp, and the step waits.
        self._outbox = []
        try:
            for slot, row in outputs:
                try:
                    self._sample(slot, row)
                except Exception as exc:  # one sequence failing leaves the others running
                    self._finish(slot, FalconchatError(f"the local model failed: {exc}"), keep=False)
        finally:
            outbox, self._outbox = self._outbox, None
            for request, item in outbox:
                request.out.put(item)

    def _send(self, request: Request, item) -> None:
        if self._outbox is not None:
            self._outbox.append((request, item))
        else:
            request.out.put(item)

    def _sample(self, slot: Slot, row: int) -> None:
        llama_cpp = self._llama_cpp
        request = slot.request
        assert request is not None  # only running slots are sampled
        token = sample_token(slot.sampler, self._ctx, row)
        logprob, top = self._logprob(row, token, request.top_n) if request.logprobs else (None, ())
        self._send(request, (token, logprob, top))
        slot.generated += 1
        if llama_cpp.llama_vocab_is_eog(self._vocab, token) or slot.generated >= request.max_new:
            self._finish(slot, _END, keep=True)
        else:
            slot.next_token = token

    def _logprob(self, row: int, token: int, top_n: int) -> tuple[float, tuple[tuple[int, float], ...]]:
        return log_softmax_at(self._ctx, row, self._n_vocab, token, top_n)


def _reader_behind(slot: Slot) -> bool:
    """Whether the slot's caller has BACKLOG_TOKENS tokens not yet taken (then it is paused)."""
    return slot.request is not None and slot.request.out.qsize() >= BACKLOG_TOKENS


def _paused_for(slot: Slot, seconds: float) -> bool:
    """Whether the slot's sequence has been paused (its caller behind) for `seconds`."""
    return slot.paused_since is not None and time.monotonic() - slot.paused_since >= seconds


def _choose(idle: list[Slot], tokens: list[int]) -> Slot:
    """The sequence holding most of this prompt (a follow-up turn); otherwise the one whose
    cache is worth least: an empty one, or the least recently used."""
    best = max(idle, key=lambda slot: common_prefix(slot.resident, tokens))
    if 2 * common_prefix(best.resident, tokens) > len(tokens):
        return best
    return min(idle, key=lambda slot: (bool(slot.resident), slot.last_used))

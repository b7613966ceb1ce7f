"""The batching engine's records (llama_batch.py): a `Request`, one caller's prompt with
its sampler and the queue its tokens go out by, and a `Slot`, one llama.cpp sequence and
what its cells hold. Callers' threads touch only a request's queue and flags; everything
else is changed by the engine's scheduling thread alone."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from falconchat.types import SamplingParams


@dataclass(eq=False)
class Request:
    tokens: list[int]
    params: SamplingParams
    max_new: int
    logprobs: bool
    top_n: int  # how many of the most likely tokens to return beside each sampled one
    sampler: Any  # its own sampling chain (with its grammar, if constrained): a LlamaSampler or GrammarSampler
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Set aside mid-reply: its next token, sampled but not yet fed, and how many it had made.
    # `tokens` then holds the prompt and the reply so far, to be read again when it comes back.
    resume: tuple[int, int] | None = None

    def close_sampler(self) -> None:
        """Free this sequence's sampler now, on the engine's thread. llama-cpp-python's LlamaSampler
        holds itself in a reference cycle until closed: left to the garbage collector, it was freed
        whenever a collection ran — in any thread, at any depth — and a collection that ran while
        a request's JSON was parsed near the recursion limit made each __del__ fail with
        RecursionError ("Exception ignored in ... LlamaSampler.__del__" in serve's log)."""
        self.sampler.close()  # closing twice is harmless


@dataclass(eq=False)
class Slot:
    """One llama.cpp sequence id and what its cells hold."""

    seq_id: int
    resident: list[int] = field(default_factory=list)  # tokens whose KV is in the cache
    request: Request | None = None
    sampler: Any = None  # its request's sampler (a LlamaSampler, Argmax or GrammarSampler) while one runs
    fed: int = 0  # prompt tokens decoded so far (including the reused prefix)
    next_token: int | None = None  # sampled, to be fed at the next step
    generated: int = 0
    last_used: float = 0.0
    paused_since: float | None = None  # when its caller fell BACKLOG_TOKENS behind

    @property
    def prefilling(self) -> bool:
        return self.request is not None and self.fed < len(self.request.tokens)

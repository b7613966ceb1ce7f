"""The local model's single-sequence path (`sequences` = 1: the chat, `ask`): one reply at a
time on the `Llama`'s own context, its tokens from llama-cpp-python's own loop or, held to a
grammar, from the batching engine's sampler one token at a time, so that both paths agree.
It decodes with the cores other programs leave free, looked at before each reply and about
twice a second while decoding (backends/threads.py)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING

from falconchat.backends.llama_sampling import common_prefix, log_softmax_at, make_sampler, sample_token
from falconchat.errors import FalconchatError
from falconchat.types import SamplingParams

if TYPE_CHECKING:
    from falconchat.backends.base import DecodeThreads

PREFILL_CHUNK = 256

Sampled = tuple[int, float | None, tuple[tuple[int, float], ...]]  # (token, logprob, top)


class SingleSequence:
    """Samples one sequence at a time on `llm` (a loaded `llama_cpp.Llama`), whose context was
    made with `threads_now` threads; `threads` says how many to move it to as the load changes."""

    def __init__(self, llm, threads: DecodeThreads, threads_now: int):
        self._llm = llm
        self._policy = threads
        self._threads_now = threads_now

    def tokens(
        self,
        tokens: list[int],
        params: SamplingParams,
        seed: int,
        logprobs: tuple[bool, int],
        should_stop: Callable[[], bool],
        grammar: str | None = None,
    ) -> Generator[Sampled, None, None]:
        """(token, logprob, top) from llama-cpp-python's own loop, or, held to a grammar, from
        the batching engine's sampler one token at a time."""
        llm = self._llm
        if grammar is not None:
            yield from self._constrained(tokens, params, seed, logprobs, should_stop, grammar)
            return
        llm.set_seed(seed)
        self._adapt_threads()
        with llama_errors():
            if not _prefill(llm, tokens, should_stop):
                return
        generated = llm.generate(
            tokens,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=0.05,  # llama.cpp's default, as create_completion uses
            repeat_penalty=params.repetition_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            typical_p=params.typical_p,
        )
        with closing(generated):
            for token in generated:
                yield (token, *_logprob(llm, token, logprobs))
                if self._policy.due():  # the load may have changed since the reply began
                    self._adapt_threads()

    def _constrained(
        self,
        tokens: list[int],
        params: SamplingParams,
        seed: int,
        logprobs: tuple[bool, int],
        should_stop: Callable[[], bool],
        grammar: str,
    ) -> Generator[Sampled, None, None]:
        """The same sampler as the engine's for a constrained sequence, so both paths agree."""
        llm = self._llm
        sampler = make_sampler(llm, params, seed, grammar)  # first: a bad grammar fails before decoding
        try:
            with llama_errors():
                if not _prefill(llm, tokens, should_stop):
                    return
            token = tokens[-1]
            while True:
                with llama_errors():
                    llm.eval([token])
                    token = sample_token(sampler, llm._ctx.ctx, -1)
                yield (token, *_logprob(llm, token, logprobs))
        finally:
            sampler.close()  # now, not by the garbage collector (see llama_slots.Request.close_sampler)

    def _adapt_threads(self) -> None:
        """Decode with the cores the other programs leave free (see backends/threads.py)."""
        threads = self._policy.threads()
        if threads != self._threads_now:
            self._llm._ctx.set_n_threads(threads, threads)
            self._threads_now = threads


@contextmanager
def llama_errors():
    """llama.cpp failing mid-generation (out of memory, a full context) is one clear error."""
    try:
        yield
    except RuntimeError as exc:
        raise FalconchatError(f"the local model failed: {exc}") from None


def _prefill(llm, tokens: list[int], should_stop: Callable[[], bool]) -> bool:
    """Read the prompt in batches, reusing the cached prefix, so that a long prompt can be
    abandoned between batches. Leaves the last token for `Llama.generate`, which then
    finds everything else cached. False if stopped."""

    cached = common_prefix(llm._input_ids[: llm.n_tokens], tokens[:-1])
    llm.n_tokens = cached  # eval() drops the cache cells beyond this first
    for start in range(cached, len(tokens) - 1, PREFILL_CHUNK):
        if should_stop():
            return False
        llm.eval(tokens[start : min(start + PREFILL_CHUNK, len(tokens) - 1)])
    return True


def _logprob(llm, token: int, asked: tuple[bool, int]) -> tuple[float | None, tuple[tuple[int, float], ...]]:
    """log-softmax of the logits the token was just sampled from (the context's last output),
    and the `top_n` most likely tokens there; nothing computed unless (logprobs, top_n) asks."""

    logprobs, top_n = asked
    if not logprobs and top_n <= 0:
        return None, ()
    return log_softmax_at(llm._ctx.ctx, -1, llm.n_vocab(), token, top_n)

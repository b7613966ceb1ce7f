"""Sampling and logprobs on a llama.cpp context, shared by the single-sequence path
(llama_single.py) and the continuous-batching engine (llama_batch.py), so that both draw
the same tokens from the same logits."""

from __future__ import annotations

import math
from collections.abc import Sequence

from falconchat.backends.grammar import GrammarSampler
from falconchat.types import SamplingParams

MIN_P = 0.05  # llama.cpp's default, as the single-sequence path uses
PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size


def log_softmax_at(
    ctx, row: int, n_vocab: int, token: int, top_n: int = 0
) -> tuple[float, tuple[tuple[int, float], ...]]:
    """log-softmax of the logits a context produced for batch row `row` (-1: the last): at
    `token`, and the `top_n` most likely (token, logprob), most likely first (only when asked)."""
    import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)
    import numpy as np  # noqa: PLC0415 (heavy: numpy)

    pointer = llama_cpp.llama_get_logits_ith(ctx, row)
    logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,)).astype(np.float64)
    peak = logits.max()
    norm = peak + math.log(np.exp(logits - peak).sum())
    top: tuple[tuple[int, float], ...] = ()
    if top_n > 0:
        best = np.argpartition(-logits, top_n - 1)[:top_n]
        best = best[np.argsort(-logits[best], kind="stable")]
        top = tuple((int(i), float(logits[i] - norm)) for i in best)
    return float(logits[token] - norm), top


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _sampler_chain(n_vocab: int, params: SamplingParams, seed: int):
    """The same chain llama-cpp-python's `Llama.generate` builds, so that greedy and seeded
    runs give the single-sequence path's text."""
    from llama_cpp._internals import LlamaSampler  # noqa: PLC0415 (heavy: llama_cpp)

    sampler = LlamaSampler()
    sampler.add_penalties(
        n_vocab, PENALTY_LAST_N, params.repetition_penalty, params.frequency_penalty, params.presence_penalty
    )
    if params.temperature == 0.0:
        sampler.add_greedy()
    else:
        sampler.add_top_k(params.top_k)
        sampler.add_typical(params.typical_p, 1)
        sampler.add_top_p(params.top_p, 1)
        sampler.add_min_p(MIN_P, 1)
        sampler.add_temp(params.temperature)
        sampler.add_dist(seed)
    return sampler


class Argmax:
    """The sampler of a greedy sequence whose chain would change nothing but pick the largest
    logit: the token is read off the logits row with numpy. The chain costs ~0.2 ms a token
    (it copies the 49k-token vocabulary into a candidates array first): ~5% of a batched step."""

    def __init__(self, n_vocab: int):
        self.n_vocab = n_vocab

    def close(self) -> None:
        """Nothing to free (the engine closes every sequence's sampler as it ends)."""


def plain_greedy(params: SamplingParams, grammar: str | None) -> bool:
    """Whether the chain for `params` only takes the largest logit: greedy, no grammar, and
    penalties that change nothing (llama.cpp's penalties sampler then returns at once)."""
    return (
        grammar is None
        and params.temperature == 0.0
        and params.repetition_penalty == 1.0
        and params.frequency_penalty == 0.0
        and params.presence_penalty == 0.0
    )


def make_sampler(llm, params: SamplingParams, seed: int, grammar: str | None = None):
    """The sampler for one sequence: the plain chain, the chain held to `grammar` (GBNF;
    an InputError if it does not parse), or, where the chain would only take the largest
    logit, `Argmax`. Whichever it is, `sample_token` draws from it."""
    if plain_greedy(params, grammar):
        return Argmax(llm.n_vocab())
    chain = _sampler_chain(llm.n_vocab(), params, seed)
    if grammar is None:
        return chain

    return GrammarSampler(chain, llm._model.vocab, grammar, llm.n_vocab())


def sample_token(sampler, ctx, row: int) -> int:
    """Sample (and accept) the next token from the logits of batch row `row` (-1: the last)."""
    import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)

    if isinstance(sampler, Argmax):
        return argmax_token(ctx, row, sampler.n_vocab)
    if isinstance(sampler, GrammarSampler):
        return sampler.sample(ctx, row)
    return llama_cpp.llama_sampler_sample(sampler.sampler, ctx, row)


def argmax_token(ctx, row: int, n_vocab: int) -> int:
    """The greedy sampler's token for batch row `row`: the first of the largest logits
    (llama.cpp's greedy keeps the first on a tie, as numpy's argmax does)."""
    import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)
    import numpy as np  # noqa: PLC0415 (heavy: numpy)

    pointer = llama_cpp.llama_get_logits_ith(ctx, row)
    return int(np.ctypeslib.as_array(pointer, shape=(n_vocab,)).argmax())

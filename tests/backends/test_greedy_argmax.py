"""The greedy fast path (llama_sampling.Argmax): where the sampler chain would only take the
largest logit, the batching engine reads it off the logits row instead. It must pick the
chain's token at every step; penalties, a grammar or a temperature keep the chain."""

from __future__ import annotations

import pytest

from falconchat.backends.llama_sampling import Argmax, _sampler_chain, argmax_token, make_sampler
from falconchat.types import SamplingParams

pytestmark = pytest.mark.slow  # loads the bundled model and generates

PROMPTS = [
    "User: What is the capital of France?\nAssistant:",
    "User: Write a haiku about rain.\nAssistant:",
    "User: Count from 1 to 30.\nAssistant: 1, 2, 3,",
    "User: Explain TCP in two sentences.\nAssistant:",
    "User: Tell me a joke about computers.\nAssistant:",
]


def test_argmax_picks_the_greedy_chain_s_token_at_every_step(bundled_model):
    import llama_cpp

    llm = bundled_model.load()
    ctx, n_vocab = llm._ctx.ctx, llm.n_vocab()
    params = SamplingParams(temperature=0)
    steps = 0
    for prompt in PROMPTS:
        chain = _sampler_chain(n_vocab, params, seed=0)  # what make_sampler built before the fast path
        llm.reset()
        llm.eval(bundled_model.tokens(prompt))
        for _ in range(40):
            fast = argmax_token(ctx, -1, n_vocab)
            token = llama_cpp.llama_sampler_sample(chain.sampler, ctx, -1)
            assert fast == token, (prompt, steps)
            steps += 1
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                break
            llm.eval([token])
    assert steps >= 100  # the prompts really decoded


@pytest.mark.parametrize(
    "changes",
    [
        {"temperature": 0.7},
        {"repetition_penalty": 1.1},
        {"frequency_penalty": 0.5},
        {"presence_penalty": 0.5},
    ],
)
def test_anything_beyond_plain_greedy_keeps_the_sampler_chain(bundled_model, changes):
    llm = bundled_model.load()
    params = SamplingParams(temperature=0).with_changes(**changes)
    assert not isinstance(make_sampler(llm, params, seed=1), Argmax)
    assert not isinstance(make_sampler(llm, SamplingParams(temperature=0), seed=1, grammar='root ::= "a"'), Argmax)
    assert isinstance(make_sampler(llm, SamplingParams(temperature=0), seed=1), Argmax)

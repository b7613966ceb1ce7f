"""Sampling settings that serve accepts take effect on the local model, the same on both paths:
`frequency_penalty`, `presence_penalty` and `typical_p`."""

from __future__ import annotations

from collections import Counter

import pytest

from falconchat.backends.local import LocalBackend
from falconchat.config_models import ModelSpec
from falconchat.types import SamplingParams, TextDelta

pytestmark = pytest.mark.slow  # loads the bundled model and generates

REPEATING = (
    "<|im_start|>user\nRepeat after me, many times: cat cat cat cat cat cat cat cat<|im_end|>\n<|im_start|>assistant\n"
)


def tokens(backend, params: SamplingParams) -> list[int]:
    return [e.token_id for e in backend.generate(REPEATING, params) if isinstance(e, TextDelta)]


@pytest.fixture(scope="module")
def backends(bundled_model):
    batched = LocalBackend(ModelSpec(name="smollm2", backend="local"), sequences=2)
    yield bundled_model, batched
    batched.close()


def test_penalties_and_typical_p_give_the_same_tokens_on_both_paths(backends):
    single, batched = backends
    params = SamplingParams(
        temperature=0.9, seed=5, max_new_tokens=40, typical_p=0.5, frequency_penalty=1.5, presence_penalty=0.5
    )
    assert tokens(single, params) == tokens(batched, params)


def test_a_frequency_penalty_makes_the_reply_repeat_less(backends):
    single, _ = backends
    greedy = SamplingParams(temperature=0.0, max_new_tokens=40)
    plain = Counter(tokens(single, greedy)).most_common(1)[0][1]
    penalised = Counter(tokens(single, greedy.with_changes(frequency_penalty=2.0))).most_common(1)[0][1]
    assert penalised < plain

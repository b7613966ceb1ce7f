"""The batch-vs-one-at-a-time check (tests/near_tie.py) forgives only a near tie."""

from __future__ import annotations

from near_tie import TIE_NATS, Step, near_tie_difference

ALONE = [
    Step(10, -0.1, {10: -0.1, 11: -3.0}),
    Step(20, -0.69, {20: -0.69, 21: -0.70, 22: -2.5}),  # a near tie between 20 and 21
    Step(30, -0.2, {30: -0.2}),
]


def test_the_same_tokens_pass():
    assert near_tie_difference(ALONE, [10, 20, 30]) is None


def test_taking_the_runner_up_of_a_near_tie_passes_and_the_rest_may_differ():
    assert near_tie_difference(ALONE, [10, 21, 99, 98]) is None


def test_taking_an_unlikely_token_fails():
    assert "not a near tie" in near_tie_difference(ALONE, [11, 20, 30])
    assert "not a near tie" in near_tie_difference(ALONE, [10, 22, 30])  # in the top, but far below
    assert "not a near tie" in near_tie_difference(ALONE, [10, 20, 31])  # not even in the top


def test_a_token_just_beyond_the_tie_margin_fails():
    step = Step(1, -1.0, {1: -1.0, 2: -1.0 - TIE_NATS - 0.01})
    assert near_tie_difference([step], [2]) is not None


def test_stopping_early_or_going_on_fails():
    assert "2 of them together and 3 alone" in near_tie_difference(ALONE, [10, 20])
    assert near_tie_difference(ALONE, [10, 20, 30, 40]) is not None

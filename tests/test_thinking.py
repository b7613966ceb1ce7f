"""Reasoning apart from the reply: <think>…</think> split wherever the tokens cut it."""

from __future__ import annotations

import pytest

from falconchat.thinking import separate_reasoning
from falconchat.types import Done, ReasoningDelta, TextDelta

TEXT = "<think>\nFirst, 2 + 2.\nThat is 4.\n</think>\n\nThe answer is 4."


def run(pieces, *, before=()):
    def stream():
        yield from before
        for piece in pieces:
            yield TextDelta(piece)
        yield Done("stop")

    events = list(separate_reasoning(stream()))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    reply = "".join(e.text for e in events if isinstance(e, TextDelta))
    return reasoning, reply, events[-1]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_tags_split_across_tokens_anywhere(size):
    reasoning, reply, done = run([TEXT[i : i + size] for i in range(0, len(TEXT), size)])
    assert reasoning == "\nFirst, 2 + 2.\nThat is 4.\n"
    assert reply == "The answer is 4."
    assert done.reasoning_s is not None and done.reasoning_s >= 0


def test_every_cut_in_two():
    for cut in range(len(TEXT) + 1):
        assert run([TEXT[:cut], TEXT[cut:]])[:2] == ("\nFirst, 2 + 2.\nThat is 4.\n", "The answer is 4."), cut


def test_a_reply_without_thinking_passes_untouched():
    reasoning, reply, done = run(["  <b>Hi", " there</b>", " <think>not reasoning</think>"])
    assert reasoning == "" and reply == "  <b>Hi there</b> <think>not reasoning</think>"
    assert done.reasoning_s is None


def test_a_reply_that_is_only_the_start_of_a_tag_is_kept():
    assert run(["<thi"]) == ("", "<thi", run(["<thi"])[2])


def test_unclosed_thinking_stays_reasoning():
    reasoning, reply, done = run(["<think>still going"])
    assert (reasoning, reply) == ("still going", "") and done.reasoning_s is not None


def test_reasoning_deltas_from_the_server_pass_through_and_are_timed():
    reasoning, reply, done = run(["42"], before=[ReasoningDelta("Let me see."), ReasoningDelta(" Yes.")])
    assert (reasoning, reply) == ("Let me see. Yes.", "42") and done.reasoning_s is not None

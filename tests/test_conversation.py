"""Conversation.record keeps every exchange, however its stream ends."""

from __future__ import annotations

from contextlib import closing

import pytest

from falconchat.conversation import Conversation
from falconchat.errors import EndpointError, Unreachable
from falconchat.types import Done, TextDelta, Turn


class Upstream:
    """An event iterator that plays a script (events, or exceptions to raise) and
    records whether it was closed."""

    def __init__(self, *script):
        self.script = list(script)
        self.closed = False
        self.pulled = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.closed or not self.script:
            raise StopIteration
        item = self.script.pop(0)
        self.pulled += 1
        if isinstance(item, BaseException):
            raise item
        return TextDelta(item) if isinstance(item, str) else item

    def close(self):
        self.closed = True


def generator_upstream(state, *items):
    try:
        for item in items:
            yield TextDelta(item) if isinstance(item, str) else item
    finally:
        state["closed"] = True


def test_complete_turn_on_done():
    conv = Conversation(system="sys")
    up = Upstream("Hel", "lo", "!", Done("stop", completion_tokens=3))
    events = list(conv.record("hi", up))
    assert [e.text for e in events[:-1]] == ["Hel", "lo", "!"]
    assert events[-1] == Done("stop", completion_tokens=3)
    assert conv.turns == [Turn("hi", "Hello!", "complete")]
    assert up.closed


def test_length_finish_is_kept_as_length():
    """Issue 15, item 12: saved as "length", so /continue still goes on after --resume."""
    conv = Conversation()
    list(conv.record("q", Upstream("a", Done("length"))))
    assert conv.turns == [Turn("q", "a", "length")]


def test_cancelled_done_is_cut():
    conv = Conversation()
    list(conv.record("q", Upstream("par", Done("cancelled"))))
    assert conv.turns == [Turn("q", "par", "cut")]


def test_consumer_closes_early_keeps_partial_text_as_cut():
    conv = Conversation()
    up = Upstream("one ", "two ", "three", Done("stop"))
    gen = conv.record("count", up)
    assert next(gen).text == "one "
    assert next(gen).text == "two "
    gen.close()
    assert conv.turns == [Turn("count", "one two ", "cut")]
    assert up.closed
    assert up.pulled == 2


def test_closing_block_keeps_partial_text():
    conv = Conversation()
    state = {}
    with closing(conv.record("q", generator_upstream(state, "par", "tial", "rest", Done("stop")))) as events:
        for event in events:
            if event.text == "tial":
                break
    assert conv.turns == [Turn("q", "partial", "cut")]
    assert state["closed"]


def test_keyboard_interrupt_from_upstream_is_cut():
    conv = Conversation()
    up = Upstream("half ", "a reply", KeyboardInterrupt(), "never", Done("stop"))
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for event in conv.record("q", up):
            seen.append(event.text)
    assert seen == ["half ", "a reply"]
    assert conv.turns == [Turn("q", "half a reply", "cut")]
    assert up.closed


def test_keyboard_interrupt_in_the_consumer_is_cut():
    conv = Conversation()
    up = Upstream("abc", "def", Done("stop"))
    gen = conv.record("q", up)
    next(gen)
    with pytest.raises(KeyboardInterrupt):
        gen.throw(KeyboardInterrupt())
    assert conv.turns == [Turn("q", "abc", "cut")]
    assert up.closed


@pytest.mark.parametrize("error", [EndpointError("stream cut"), Unreachable("gone")])
def test_endpoint_error_is_an_error_turn(error):
    conv = Conversation()
    up = Upstream("some ", "text", error, Done("stop"))
    with pytest.raises(EndpointError) as info:
        list(conv.record("q", up))
    assert info.value is error
    assert conv.turns == [Turn("q", "some text", "error")]
    assert up.closed


def test_error_before_any_text_keeps_no_turn():
    """Issue 15, item 4: a message whose request failed is not sent again as context."""
    conv = Conversation(turns=[Turn("earlier", "kept", "complete")])
    up = Upstream(Unreachable("no route"))
    with pytest.raises(Unreachable):
        list(conv.record("q", up))
    assert conv.turns == [Turn("earlier", "kept", "complete")]
    assert up.closed


def test_a_continuation_that_fails_before_any_text_leaves_the_reply_as_it_was():
    conv = Conversation(turns=[Turn("q", "half a", "cut")])
    with pytest.raises(Unreachable):
        list(conv.record_continuation(Upstream(Unreachable("no route"))))
    assert conv.turns == [Turn("q", "half a", "cut")]


def test_a_continuation_broken_after_some_text_keeps_it_as_an_error():
    conv = Conversation(turns=[Turn("q", "half a", "cut")])
    with pytest.raises(EndpointError):
        list(conv.record_continuation(Upstream(" reply", EndpointError("cut"))))
    assert conv.turns == [Turn("q", "half a reply", "error")]


def test_generator_upstream_closed_on_every_ending():
    for script, consume in [
        (("a", Done("stop")), list),
        (("a", "b", Done("stop")), lambda g: (next(g), g.close())),
    ]:
        state = {}
        conv = Conversation()
        consume(conv.record("q", generator_upstream(state, *script)))
        assert state.get("closed"), script


def test_closing_after_done_keeps_the_turn_complete():
    # A consumer that stops at Done (it is the last event) and closes the stream
    # has received the whole reply.
    conv = Conversation()
    up = Upstream("all ", "of it", Done("stop"))
    gen = conv.record("q", up)
    for event in gen:
        if isinstance(event, Done):
            break
    gen.close()
    assert conv.turns == [Turn("q", "all of it", "complete")]
    assert up.closed


def test_turns_accumulate_in_order_and_undo():
    conv = Conversation()
    list(conv.record("first", Upstream("1", Done("stop"))))
    list(conv.record("second", Upstream("2", Done("stop"))))
    assert [(t.user, t.assistant) for t in conv.turns] == [("first", "1"), ("second", "2")]
    assert conv.undo() == Turn("second", "2", "complete")
    assert [t.user for t in conv.turns] == ["first"]
    conv.clear()
    assert conv.turns == [] and conv.undo() is None


def test_prompt_for_uses_recorded_turns():
    conv = Conversation(system="Be kind.")
    list(conv.record("Hi", Upstream("Hello", Done("stop"))))
    fitted = conv.prompt_for("Again", len, 10_000)
    assert fitted.text == "System:Be kind.\nUser: Hi\nAssistant: Hello\nUser: Again\nAssistant:"
    assert fitted.dropped_turns == 0


def test_continue_over_a_servers_chat_api_is_refused_and_the_reply_kept():
    """A server's chat template always closes the last message: /continue there is one clear
    error (it works in falconchat's own prompts, "falcon" and "native")."""
    from falconchat.errors import InputError
    from falconchat.exchange import continue_answer
    from falconchat.types import SamplingParams

    class ChatApi:
        prompt_format, takes_messages = "chat", True

    conv = Conversation(turns=[Turn("count", "one two", status="length")])
    with pytest.raises(InputError, match="/continue needs"):
        continue_answer(conv, ChatApi(), SamplingParams(), writer=None, notice=print)  # type: ignore[arg-type]
    assert conv.turns == [Turn("count", "one two", status="length")]

"""The Falcon-style prompt, trimming history to a budget, and the reply filter."""

from __future__ import annotations

import pytest

from falconchat.prompt import (
    FALCON_STOPS,
    PromptTooLong,
    chat_messages,
    clean_reply,
    falcon_prompt,
    fit_continuation,
    fit_prompt,
    stop_sequences,
)
from falconchat.types import Done, TextDelta, Turn

# ---- formatting ------------------------------------------------------------------------


def test_golden_prompt_with_system():
    history = [Turn("Hi", "Hello! How can I help?"), Turn("2+2?", "4")]
    assert falcon_prompt("You are terse.", history, "And 3+3?") == (
        "System:You are terse.\n"
        "User: Hi\n"
        "Assistant: Hello! How can I help?\n"
        "User: 2+2?\n"
        "Assistant: 4\n"
        "User: And 3+3?\n"
        "Assistant:"
    )


def test_golden_prompt_without_system():
    assert falcon_prompt("", [Turn("Hi", "Hello")], "Bye") == "User: Hi\nAssistant: Hello\nUser: Bye\nAssistant:"


def test_golden_prompt_first_message():
    assert falcon_prompt("", [], "Hello there") == "User: Hello there\nAssistant:"
    assert falcon_prompt("S", [], "m") == "System:S\nUser: m\nAssistant:"


def test_stop_sequences_are_falcons_plus_extra_without_duplicates():
    assert FALCON_STOPS == ("\nUser:", "<|endoftext|>")
    assert stop_sequences() == ["\nUser:", "<|endoftext|>"]
    assert stop_sequences(["###", "\nUser:"]) == ["\nUser:", "<|endoftext|>", "###"]


# ---- fitting a budget ------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


SYSTEM = "be brief"
HISTORY = [Turn(f"question {i} alpha", f"answer {i} beta gamma") for i in range(5)]
MESSAGE = "the newest message"


def test_everything_fits():
    full = falcon_prompt(SYSTEM, HISTORY, MESSAGE)
    fitted = fit_prompt(SYSTEM, HISTORY, MESSAGE, words, words(full))
    assert fitted.text == full
    assert fitted.dropped_turns == 0
    assert fitted.prompt_tokens == words(full)


@pytest.mark.parametrize("kept", [4, 3, 1])
def test_oldest_turns_are_dropped_first(kept):
    expected = falcon_prompt(SYSTEM, HISTORY[-kept:], MESSAGE)
    # The budget fits exactly `kept` newest turns and not one more.
    fitted = fit_prompt(SYSTEM, HISTORY, MESSAGE, words, words(expected))
    assert fitted.text == expected
    assert fitted.dropped_turns == len(HISTORY) - kept
    assert fitted.text.startswith("System:be brief\n")
    assert fitted.text.endswith("User: the newest message\nAssistant:")
    assert "question 0 alpha" not in fitted.text
    assert fitted.prompt_tokens <= words(expected)


def test_one_token_short_drops_one_more_turn():
    budget = words(falcon_prompt(SYSTEM, HISTORY[-2:], MESSAGE)) - 1
    fitted = fit_prompt(SYSTEM, HISTORY, MESSAGE, words, budget)
    assert fitted.dropped_turns == 4
    assert fitted.text == falcon_prompt(SYSTEM, HISTORY[-1:], MESSAGE)


def test_only_system_and_message_left():
    fixed = falcon_prompt(SYSTEM, [], MESSAGE)
    fitted = fit_prompt(SYSTEM, HISTORY, MESSAGE, words, words(fixed))
    assert fitted.text == fixed
    assert fitted.dropped_turns == len(HISTORY)


def test_with_character_counter():
    expected = falcon_prompt("", HISTORY[2:], MESSAGE)
    fitted = fit_prompt("", HISTORY, MESSAGE, len, len(expected) + 3)
    assert fitted.text == expected and fitted.dropped_turns == 2


def test_message_alone_too_long_raises():
    fixed = falcon_prompt(SYSTEM, [], MESSAGE)
    with pytest.raises(PromptTooLong) as info:
        fit_prompt(SYSTEM, HISTORY, MESSAGE, words, words(fixed) - 1)
    assert info.value.needed == words(fixed)
    assert info.value.budget == words(fixed) - 1


def test_message_too_long_without_history():
    with pytest.raises(PromptTooLong):
        fit_prompt("", [], "one two three four five", words, 3)


# ---- issue 15, item 10: chat messages measured as the model's template writes them -----------


def template_tokens(messages) -> int:
    """A stand-in for a chat template: each message costs its words and 10 tokens of markers."""
    return sum(words(m["content"]) + 10 for m in messages)


def test_chat_messages_are_fitted_by_their_own_count():
    kept = 2
    budget = template_tokens(chat_messages(SYSTEM, HISTORY[-kept:], MESSAGE))  # exactly the 2 newest turns
    fitted = fit_prompt(SYSTEM, HISTORY, MESSAGE, words, budget, template_tokens)
    assert fitted.dropped_turns == len(HISTORY) - kept
    assert fitted.messages == chat_messages(SYSTEM, HISTORY[-kept:], MESSAGE)
    assert fitted.prompt_tokens == budget
    # Counted as Falcon-style text, the same budget would keep more turns than the template has room for.
    assert fit_prompt(SYSTEM, HISTORY, MESSAGE, words, budget).dropped_turns < len(HISTORY) - kept


def test_chat_messages_too_long_for_the_budget_raise():
    with pytest.raises(PromptTooLong):
        fit_prompt(SYSTEM, [], MESSAGE, words, template_tokens(chat_messages(SYSTEM, [], MESSAGE)) - 1, template_tokens)


def test_a_continuation_is_text_ending_inside_the_reply_and_messages_ending_with_it():
    history = [*HISTORY[:2], Turn("count to ten", "one two three", status="length")]
    fitted = fit_continuation(SYSTEM, history, words, 1000)
    assert fitted.text == falcon_prompt(SYSTEM, HISTORY[:2], "count to ten") + " one two three"
    assert fitted.messages == (
        *chat_messages(SYSTEM, HISTORY[:2], "count to ten"),
        {"role": "assistant", "content": "one two three"},
    )
    budget = template_tokens(fitted.messages[-4:]) + 10  # room for the system message and the last turn only
    trimmed = fit_continuation(SYSTEM, history, words, budget, template_tokens)
    assert trimmed.dropped_turns == 2 and trimmed.messages[-1]["content"] == "one two three"


# ---- clean_reply -----------------------------------------------------------------------


class Upstream:
    """A generator of events that records how far it got and whether it was closed."""

    def __init__(self, *items):
        self.items = items
        self.closed = False
        self.sent = 0
        self.gen = self._run()

    def _run(self):
        try:
            for item in self.items:
                self.sent += 1
                yield TextDelta(item) if isinstance(item, str) else item
        finally:
            self.closed = True


def run(*items, stops=FALCON_STOPS):
    up = Upstream(*items)
    events = list(clean_reply(up.gen, list(stops)))
    return events, up


def texts(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def check_shape(events):
    assert isinstance(events[-1], Done)
    assert all(isinstance(e, TextDelta) for e in events[:-1])
    assert all(e.text for e in events[:-1]), "no empty deltas"


def test_leading_space_of_first_token_dropped_once():
    events, _ = run(" Hello", " world", ".", Done("length", completion_tokens=3))
    check_shape(events)
    assert events[0].text == "Hello"
    assert texts(events) == "Hello world."
    assert events[-1].finish_reason == "length"


def test_only_one_leading_space_dropped():
    events, _ = run("  indented", Done("stop"))
    assert texts(events) == " indented"


def test_first_token_without_space_kept():
    events, _ = run("Hi", " there", Done("stop"))
    assert texts(events) == "Hi there"


def test_stop_split_across_tokens_is_never_shown():
    events, up = run(" Sure", ".", "\nUs", "er:", " what next?", Done("length"))
    check_shape(events)
    assert texts(events) == "Sure."
    assert events[-1].finish_reason == "stop"
    assert not any("\nUs" in e.text or "User" in e.text for e in events[:-1])
    assert up.closed
    assert up.sent == 4  # nothing was pulled after the stop completed


def test_stop_in_the_middle_of_a_token():
    events, up = run(" The answer is 4.\nUser: and", " more", Done("length"))
    assert texts(events) == "The answer is 4."
    assert events[-1].finish_reason == "stop"
    assert up.closed and up.sent == 1


def test_endoftext_split_in_three():
    events, _ = run(" ok", "<|end", "oftext", "|>", "junk", Done("length"))
    assert texts(events) == "ok"
    assert events[-1].finish_reason == "stop"


def test_extra_stop_sequence():
    events, _ = run(" a", "#", "##", " b", Done("length"), stops=stop_sequences(["###"]))
    assert texts(events) == "a"
    assert events[-1].finish_reason == "stop"


def test_text_that_only_looks_like_a_stop_is_released():
    events, up = run(" Yes", "\nUs", "ually", " fine", Done("length"))
    check_shape(events)
    assert texts(events) == "Yes\nUsually fine"
    assert events[-1].finish_reason == "length"
    assert up.sent == 5


def test_held_prefix_released_at_done():
    events, _ = run(" Tail", "\nUse", Done("length"))
    assert texts(events) == "Tail\nUse"
    assert events[-1].finish_reason == "length"


def test_held_text_is_not_yielded_early():
    up = Upstream(" A", "\nU", "ser", ":", Done("length"))
    gen = clean_reply(up.gen, list(FALCON_STOPS))
    assert next(gen).text == "A"
    event = next(gen)  # pulls "\nU", "ser", ":" before it can decide
    assert isinstance(event, Done) and event.finish_reason == "stop"
    assert up.sent == 4


def test_upstream_closed_by_the_time_stop_done_arrives():
    # The engine must stop when the stop sequence appears, not when (or if) the
    # consumer asks for another event after Done.
    up = Upstream(" A", "\nUser:", " more", Done("length"))
    gen = clean_reply(up.gen, list(FALCON_STOPS))
    assert next(gen).text == "A"
    assert isinstance(next(gen), Done)
    assert up.closed


def test_exactly_one_done_passed_through():
    done = Done("length", prompt_tokens=9, completion_tokens=2)
    events, _ = run(" a", "b", done)
    assert events[-1] == done
    assert sum(isinstance(e, Done) for e in events) == 1


def test_upstream_closed_when_stop_hit():
    _events, up = run(" x", "\nUser:", " y", " z", Done("length"))
    assert up.closed
    assert up.sent == 2


def test_closing_clean_reply_closes_upstream():
    up = Upstream(" one", " two", " three", Done("length"))
    gen = clean_reply(up.gen, list(FALCON_STOPS))
    assert next(gen).text == "one"
    assert not up.closed
    gen.close()
    assert up.closed
    assert up.sent == 1


def test_upstream_error_propagates_and_closes():
    def failing():
        try:
            yield TextDelta(" part")
            raise RuntimeError("boom")
        finally:
            state["closed"] = True

    state = {}
    gen = clean_reply(failing(), list(FALCON_STOPS))
    assert next(gen).text == "part"
    with pytest.raises(RuntimeError):
        next(gen)
    assert state["closed"]


# ---- issue 15: the reply's first characters and the /continue boundary ---------------------


def test_leading_blank_lines_of_a_reply_are_not_shown():
    events, _ = run("\n", "\n ", " Hello", "\nworld", Done("stop"))
    check_shape(events)
    assert texts(events) == "  Hello\nworld"  # blank lines gone, the first line's indent kept


def test_a_reply_of_only_whitespace_shows_nothing():
    events, _ = run(" ", "\n\n", Done("stop"))
    assert events == [Done("stop")]


def test_a_stop_sequence_after_leading_blank_lines_is_still_a_stop():
    events, _ = run("\n", "\nUser:", " hi", Done("length"))
    assert texts(events) == ""
    assert events[-1].finish_reason == "stop"


def continued(after: str, *items):
    up = Upstream(*items)
    return list(clean_reply(up.gen, list(FALCON_STOPS), after=after))


def test_a_stop_sequence_split_across_the_continue_boundary_is_caught():
    # The old reply ended with a line break at the length limit; the model goes on with "User:".
    events = continued("User: hi\nAssistant: Line one\n", "User", ":", " And the word", Done("length"))
    assert texts(events) == ""
    assert events[-1].finish_reason == "stop"


def test_a_continuation_keeps_its_first_space_and_line_breaks():
    events = continued("User: hi\nAssistant: Line one", " and", "\n\nmore", Done("length"))
    assert texts(events) == " and\n\nmore"


def test_a_stop_sequence_wholly_inside_the_prompt_is_not_a_stop():
    events = continued("User: a\nAssistant: b\nUser: c\nAssistant: half", " done", Done("stop"))
    assert texts(events) == " done"


def test_a_fresh_prompt_drops_the_separator_space():
    events = continued("User: hi\nAssistant:", " Hello", Done("stop"))
    assert texts(events) == "Hello"

"""`batch` input, in process: formats, ids, messages, sampling values, bad lines."""

from __future__ import annotations

import json

import pytest

from falconchat.batch.input import detect_format, parse_lines
from falconchat.types import SamplingParams, Turn

BASE = SamplingParams(temperature=0.7, max_new_tokens=64)


def parse(*lines, fmt="jsonl", system="", max_bytes=10_000):
    raw = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    return parse_lines(raw, fmt, system, BASE, max_bytes)


def test_format_is_jsonl_when_the_first_line_is_an_object():
    assert detect_format(["", '  {"prompt": "x"}'], "auto") == "jsonl"
    assert detect_format(["What is {x}?"], "auto") == "lines"
    assert detect_format(["{not json"], "lines") == "lines"


def test_plain_lines_use_the_line_number_as_id_and_skip_blanks():
    parsed = parse("first", "   ", "  second  ", fmt="lines", system="Be brief.")
    assert [(i.id, i.message, i.system) for i in parsed.items] == [
        (1, "first", "Be brief."),
        (3, "second", "Be brief."),
    ]
    assert parsed.bad == []


def test_ids_default_to_the_line_number_and_keep_their_type():
    parsed = parse({"prompt": "a"}, {"id": "x", "prompt": "b"}, {"id": 7, "prompt": "c"})
    assert [i.id for i in parsed.items] == [1, "x", 7]
    assert parse({"id": "1", "prompt": "a"}).items[0].key != parse({"id": 1, "prompt": "a"}).items[0].key


def test_messages_become_system_history_and_the_last_user_message():
    [item] = parse(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"},
            ]
        }
    ).items
    assert item.system == "Be brief." and item.message == "Bye"
    assert item.history == (Turn(user="Hi", assistant="Hello!"),)


def test_a_line_s_sampling_values_override_the_command_s():
    [item] = parse({"prompt": "x", "temperature": 0, "max_tokens": 5, "stop": "END", "seed": 9}).items
    assert item.params == BASE.with_changes(temperature=0.0, max_new_tokens=5, stop=("END",), seed=9)
    assert parse({"prompt": "y"}).items[0].params is BASE


@pytest.mark.parametrize(
    "line, says",
    [
        ('{"prompt": ', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ({"id": True, "prompt": "x"}, "id must be"),
        ({"id": 1.5, "prompt": "x"}, "id must be"),
        ({"id": 1}, '"prompt" or "messages"'),
        ({"prompt": "x", "messages": []}, '"prompt" or "messages"'),
        ({"prompt": "  "}, "non-empty"),
        ({"prompt": "x", "system": 3}, "system must be"),
        ({"messages": "hi"}, "non-empty list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "alternate"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "end with user"),
        ({"system": "s", "messages": [{"role": "system", "content": "t"}, {"role": "user", "content": "u"}]}, "once"),
        ({"prompt": "x", "temperature": -1}, "temperature"),
        ({"prompt": "x", "top_p": 2}, "top-p"),
        ({"prompt": "x", "max_new_tokens": 0}, "max-new-tokens"),
        ({"prompt": "x", "max_tokens": 3, "max_new_tokens": 3}, "not both"),
        ({"prompt": "x", "stop": [""]}, "stop"),
        ({"prompt": "x" * 200}, "larger than 100 bytes"),
    ],
)
def test_bad_lines_are_reported_with_their_number_and_reason(line, says):
    parsed = parse({"prompt": "fine"}, line, max_bytes=100)
    assert len(parsed.items) == 1
    [(number, why)] = parsed.bad
    assert number == 2 and says in why, why
    assert "(from line" not in why  # the line number is said once, by the report


def test_a_repeated_id_is_a_bad_line_naming_the_first():
    parsed = parse({"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}, {"id": "a", "prompt": "z"})
    assert [i.id for i in parsed.items] == ["a", "b"]
    assert parsed.bad == [(3, "id 'a' was already used on line 1")]


def test_unknown_fields_are_ignored_and_remembered_once():
    parsed = parse({"prompt": "x", "answer": 1}, {"prompt": "y", "answer": 2, "tags": []})
    assert len(parsed.items) == 2
    assert parsed.ignored_fields == {"answer": 1, "tags": 2}

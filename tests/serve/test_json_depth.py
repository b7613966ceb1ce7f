"""The bound on JSON nesting that `serve` checks before a body is parsed (validation.py): exact
at the bound, blind to brackets inside strings, and cheap on a body of the largest size."""

from __future__ import annotations

import json

import pytest

from falconchat.serve.validation import MAX_JSON_DEPTH, ShapeInvalid, nested_deeper_than, parse_json


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"k": value, "noise": "]}\\"}  # brackets and escapes in strings
    return value


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-le"])
def test_the_bound_is_exact_whatever_the_encoding(encoding):
    at_bound = json.dumps(nested(MAX_JSON_DEPTH)).encode(encoding)
    beyond = json.dumps(nested(MAX_JSON_DEPTH + 1)).encode(encoding)
    assert not nested_deeper_than(at_bound, MAX_JSON_DEPTH)
    assert nested_deeper_than(beyond, MAX_JSON_DEPTH)
    assert parse_json(json.dumps(nested(MAX_JSON_DEPTH)).encode()) == nested(MAX_JSON_DEPTH)


def test_brackets_inside_strings_do_not_count():
    body = json.dumps({"inputs": "[{" * 5000 + '\\"[' * 500 + "\\", "more": [[["]]]]"]]]}).encode()
    assert not nested_deeper_than(body, MAX_JSON_DEPTH)
    assert parse_json(body)["more"] == [[["]]]]"]]]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"[" * (MAX_JSON_DEPTH + 1),  # never closed: json.loads would recurse all the same
        b'{"inputs": "hi", "parameters": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001,
    ],
    ids=["100k arrays", "unclosed", "objects in a valid request"],
)
def test_a_body_nested_too_deeply_is_refused_before_it_is_parsed(body, monkeypatch):
    def not_parsed(*_args, **_kwargs):
        raise AssertionError("json.loads was called")

    monkeypatch.setattr(json, "loads", not_parsed)
    with pytest.raises(ShapeInvalid, match=f"nested too deeply \\(more than {MAX_JSON_DEPTH} levels\\)"):
        parse_json(body)

"""The generate API's request rules that depend on nothing but the body (in-process, no model)."""

from __future__ import annotations

import pytest

from falconchat.serve.generate_requests import parse_request
from falconchat.serve.validation import (
    Limits,
    RequestInvalid,
    ShapeInvalid,
    check_length,
    parse_json,
    resolve_max_new_tokens,
)

LIMITS = Limits(max_input_tokens=2047, max_total_tokens=2048)


def parse(stream=None, **parameters):
    return parse_request({"inputs": "hi", "parameters": parameters}, LIMITS, stream=stream)


def test_post_root_returns_the_full_text_by_default_and_generate_does_not():
    assert parse(stream=None).return_full_text is True  # POST /, as TGI for a text-generation model
    assert parse(stream=None, return_full_text=False).return_full_text is False
    assert parse(stream=False).return_full_text is False
    assert parse(stream=True, return_full_text=True).return_full_text is True


def test_a_missing_max_new_tokens_allows_what_the_context_leaves_up_to_tgis_default():
    assert parse().params.max_new_tokens == 0  # not given: settled once the prompt's length is known
    assert resolve_max_new_tokens(0, 10, LIMITS) == 1024
    assert resolve_max_new_tokens(0, 2000, LIMITS) == 48
    check_length(2000, resolve_max_new_tokens(0, 2000, LIMITS), LIMITS)  # accepted, where 100 would not be
    assert resolve_max_new_tokens(7, 2000, LIMITS) == 7


@pytest.mark.parametrize("n", [0, 1, 5])
def test_top_n_tokens_up_to_five(n):
    assert parse(top_n_tokens=n).top_n_tokens == n


def test_top_n_tokens_above_five_is_a_validation_error():
    with pytest.raises(RequestInvalid, match=r"`top_n_tokens` must be >= 0 and <= 5. Given: 6") as caught:
        parse(top_n_tokens=6)
    assert not isinstance(caught.value, ShapeInvalid)  # streamed, it is an error event


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"inputs": 1}', b'{"inputs": "hi", "parameters": {"temperature": "x"}}', b'{"inputs": "hi", "stream": 1}'],
)
def test_unreadable_bodies_are_shape_errors(body):
    with pytest.raises(ShapeInvalid):
        parse_request(parse_json(body), LIMITS)


@pytest.mark.parametrize(
    "body",
    [
        rb'{"inputs": "hi \ud800"}',
        rb'{"inputs": "hi \uDFFF there"}',
        rb'{"inputs": "hi", "parameters": {"stop": ["\ud83d"]}}',
        rb'{"inputs": "hi", "\udc00": 1}',
    ],
)
def test_a_lone_surrogate_escape_is_refused_as_tgis_parser_does(body):
    with pytest.raises(ShapeInvalid, match="lone surrogate"):
        parse_json(body)


@pytest.mark.parametrize("body", [rb'{"inputs": "\ud83d\ude00"}', rb'{"inputs": "a \\ud800 is text"}'])
def test_a_surrogate_pair_or_an_escaped_backslash_is_accepted(body):
    assert parse_request(parse_json(body), LIMITS).inputs in ("\U0001f600", "a \\ud800 is text")


@pytest.mark.parametrize("parameters", [{"temperature": -1}, {"top_p": 1}, {"stop": ["a"] * 5}, {"stop": [""]}])
def test_values_out_of_range_are_validation_errors_not_shape_errors(parameters):
    with pytest.raises(RequestInvalid) as caught:
        parse(**parameters)
    assert not isinstance(caught.value, ShapeInvalid)

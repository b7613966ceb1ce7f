"""The Messages API's request validation, in process: what is accepted becomes sampling settings,
everything else is one RequestInvalid (a 422), never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falconchat.serve.generate_requests import parse_request
from falconchat.serve.openai_requests import parse_chat, parse_completion
from falconchat.serve.validation import Limits, RequestInvalid
from falconchat.types import Constraint

LIMITS = Limits(max_input_tokens=2047, max_total_tokens=2048)
HI = [{"role": "user", "content": "hi"}]
EDGE = st.sampled_from([None, -1, 0, 1, 2, 0.5, 3.5, 10**30, "1", "", True, [], {}, [1], {"a": 1}, {"type": "json"}])
KEYS = [
    "temperature", "top_p", "max_tokens", "seed", "stop", "n", "tools", "logprobs", "top_logprobs", "stream",
    "stream_options", "response_format", "frequency_penalty", "presence_penalty", "logit_bias", "model", "prompt",
    "messages", "suffix", "echo",
]  # fmt: skip


def test_a_chat_request_becomes_sampling_settings():
    request = parse_chat(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            ],
            "max_tokens": 7,
            "temperature": 0,
            "seed": 3,
            "stop": "\n",
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "response_format": {"type": "json_object"},
        },
        LIMITS,
    )
    assert request.messages == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"})
    assert (request.params.max_new_tokens, request.params.temperature, request.params.seed) == (7, 0, 3)
    assert request.params.stop == ("\n",)
    assert request.stream and request.include_usage and request.logprobs
    assert request.params.constraint is not None and request.params.constraint.kind == "gbnf"


TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [TOOL], "tool_choice": "none"},
        {"tool_choice": "none"},
        {"tools": []},
        {"functions": [TOOL["function"]], "function_call": "none"},
    ],
)
def test_tools_the_client_says_not_to_call_are_left_out(extra):
    request = parse_chat({"messages": HI, "max_tokens": 3, **extra}, LIMITS)
    assert request.messages == tuple(HI) and request.params.max_new_tokens == 3


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [TOOL]},
        {"tools": [TOOL], "tool_choice": "auto"},
        {"tools": [TOOL], "tool_choice": "required"},
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "weather"}}},
        {"tool_choice": "auto"},
        {"functions": [TOOL["function"]]},
    ],
)
def test_tools_that_may_be_called_are_refused(extra):
    with pytest.raises(RequestInvalid, match="not supported by this server"):
        parse_chat({"messages": HI, **extra}, LIMITS)


def test_missing_max_tokens_leaves_the_context_to_decide_and_sampling_is_the_default():
    request = parse_completion({"prompt": ["Once"]}, LIMITS)
    assert request.prompt == "Once" and request.params.max_new_tokens == 0
    assert request.params.temperature == 1.0 and request.params.seed is not None


@pytest.mark.parametrize(
    "grammar",
    [
        {"type": "json", "value": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        {"type": "json_schema", "value": {"name": "x", "schema": {"type": "array"}}},
        {"type": "regex", "value": r"\d+"},
    ],
)
def test_tgi_grammars_on_the_generate_api_become_a_compiled_constraint(grammar):
    request = parse_request({"inputs": "hi", "parameters": {"grammar": grammar}}, LIMITS)
    assert isinstance(request.params.constraint, Constraint) and "root ::=" in request.params.constraint.value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), EDGE, max_size=6), st.booleans())
def test_any_body_is_accepted_or_refused_with_a_request_invalid(body, chat):
    body = {"messages": HI, "prompt": "hi", **body}
    try:
        request = (parse_chat if chat else parse_completion)(body, LIMITS)
    except RequestInvalid as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert request.params.max_new_tokens >= 0

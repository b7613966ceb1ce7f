"""`serve`: reading and validating the Messages API's requests (`/v1/chat/completions`,
`/v1/completions`), with TGI's rules and error messages. Pure: a JSON body in, an
`OpenAIRequest` or a `RequestInvalid` out.

A parameter this server cannot honour (`n` > 1, tools it may call, `logit_bias`)
is refused with a 422, never silently dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from falconchat.serve.structured import response_format_constraint
from falconchat.serve.validation import Limits, RequestInvalid, flag, integer, number
from falconchat.types import SamplingParams

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class OpenAIRequest:
    messages: tuple[dict, ...] | None  # chat: {"role", "content"} with text content
    prompt: str | None  # completions
    params: SamplingParams  # max_new_tokens 0: as many as the context leaves (TGI's default)
    stream: bool
    include_usage: bool
    logprobs: bool
    model: str
    top_logprobs: int = 0  # alternatives per token in `logprobs` (only with `logprobs`)


def parse_chat(payload: Any, limits: Limits) -> OpenAIRequest:
    if not isinstance(payload, dict):
        raise RequestInvalid("the body must be a JSON object with `messages`")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestInvalid("`messages` must be a non-empty list")
    _no_tool_calls(payload)
    logprobs = flag(payload, "logprobs")
    top_logprobs = integer(payload, "top_logprobs")
    if top_logprobs is not None and not 0 <= top_logprobs <= 5:
        raise RequestInvalid(f"`top_logprobs` must be >= 0 and <= 5. Given: {top_logprobs}")
    return OpenAIRequest(
        messages=tuple(_message(m, i) for i, m in enumerate(messages)),
        prompt=None,
        params=_sampling(payload, limits).with_changes(
            constraint=response_format_constraint(payload.get("response_format"))
        ),
        stream=flag(payload, "stream"),
        include_usage=_include_usage(payload),
        logprobs=logprobs,
        model=_model(payload),
        top_logprobs=(top_logprobs or 0) if logprobs else 0,
    )


def _no_tool_calls(payload: dict) -> None:
    """Tools the client says not to call (`tool_choice: "none"`) are left out, as a model that
    could call them would answer; tools that may be called are refused: this server runs none."""
    for tools, choice in (("tools", "tool_choice"), ("functions", "function_call")):
        if payload.get(choice) == "none":
            continue
        for name in (tools, choice):
            if payload.get(name) not in (None, []):
                raise RequestInvalid(f"`{name}` is not supported by this server (it runs no tool calls)")


def parse_completion(payload: Any, limits: Limits) -> OpenAIRequest:
    if not isinstance(payload, dict):
        raise RequestInvalid("the body must be a JSON object with `prompt`")
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, list):
        raise RequestInvalid("`prompt` must be one string: this server answers one prompt per request")
    if not isinstance(prompt, str) or not prompt:
        raise RequestInvalid("`prompt` must be a non-empty string")
    if payload.get("suffix") not in (None, ""):
        raise RequestInvalid("`suffix` is not supported by this server")
    if payload.get("echo"):
        raise RequestInvalid("`echo` is not supported by this server")
    if payload.get("logprobs") not in (None, 0, False):
        raise RequestInvalid("`logprobs` is not supported on /v1/completions by this server")
    return OpenAIRequest(
        messages=None,
        prompt=prompt,
        params=_sampling(payload, limits),
        stream=flag(payload, "stream"),
        include_usage=_include_usage(payload),
        logprobs=False,
        model=_model(payload),
    )


def _message(message: Any, index: int) -> dict:
    if not isinstance(message, dict):
        raise RequestInvalid(f"`messages[{index}]` must be an object with `role` and `content`")
    role = message.get("role")
    if role not in ROLES:
        raise RequestInvalid(f"`messages[{index}].role` must be one of {', '.join(ROLES)}. Given: {str(role)[:40]}")
    content = message.get("content")
    if isinstance(content, list):  # parts: only text ones
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestInvalid(
                    f"`messages[{index}].content` parts must be text parts; this model reads no images"
                )
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str):
        raise RequestInvalid(f"`messages[{index}].content` must be a string or a list of text parts")
    return {"role": role, "content": content}


def _sampling(payload: dict, limits: Limits) -> SamplingParams:
    n = integer(payload, "n")
    if n is not None and n != 1:
        raise RequestInvalid(f"`n` must be 1: this server returns one choice. Given: {n}")
    if payload.get("logit_bias"):
        raise RequestInvalid("`logit_bias` is not supported by this server")
    penalties: dict[str, float] = {}
    for name in ("frequency_penalty", "presence_penalty"):
        value = number(payload, name)
        if value is not None and not -2 <= value <= 2:
            raise RequestInvalid(f"`{name}` must be >= -2.0 and <= 2.0. Given: {value}")
        penalties[name] = value or 0.0
    temperature = number(payload, "temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise RequestInvalid(f"`temperature` must be >= 0.0 and <= 2.0. Given: {temperature}")
    top_p = number(payload, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise RequestInvalid(f"`top_p` must be > 0.0 and <= 1.0. Given: {top_p}")
    repetition_penalty = number(payload, "repetition_penalty")
    if repetition_penalty is not None and repetition_penalty <= 0:
        raise RequestInvalid(f"`repetition_penalty` must be strictly positive. Given: {repetition_penalty}")
    max_tokens = integer(payload, "max_tokens")
    if max_tokens is None:
        max_tokens = integer(payload, "max_completion_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise RequestInvalid(f"`max_tokens` must be strictly positive. Given: {max_tokens}")
    seed = integer(payload, "seed")
    if seed is not None and not 0 <= seed < 2**64:
        raise RequestInvalid(f"`seed` must be a non-negative integer. Given: {seed}")
    stops = payload.get("stop")
    stops = [stops] if isinstance(stops, str) else ([] if stops is None else stops)
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestInvalid("`stop` must be a string or a list of non-empty strings")
    if len(stops) > limits.max_stop_sequences:
        raise RequestInvalid(f"`stop` supports up to {limits.max_stop_sequences} stop sequences. Given: {len(stops)}")
    temperature = 1.0 if temperature is None else temperature  # OpenAI's default: sample
    return SamplingParams(
        temperature=temperature,
        max_new_tokens=max_tokens or 0,
        top_p=1.0 if top_p is None else top_p,
        top_k=0,
        repetition_penalty=1.0 if repetition_penalty is None else repetition_penalty,
        frequency_penalty=penalties["frequency_penalty"],
        presence_penalty=penalties["presence_penalty"],
        seed=(seed if seed is not None else random.getrandbits(32)) % 2**31,
        stop=tuple(stops),
    )


def _include_usage(payload: dict) -> bool:
    options = payload.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise RequestInvalid("`stream_options` must be an object")
    return flag(options, "include_usage")


def _model(payload: dict) -> str:
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestInvalid("`model` must be a string")
    return model or ""

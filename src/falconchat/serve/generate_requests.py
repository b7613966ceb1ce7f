"""`serve`: reading and validating the generate API's requests (`/`, `/generate`,
`/generate_stream`), with TGI's rules, before any work reaches the model.

Everything here is pure: a parsed JSON body in, a `GenerateRequest` or a `RequestInvalid` out.
Unknown fields are ignored and never passed on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from falconchat.serve.structured import grammar_constraint
from falconchat.serve.validation import Limits, RequestInvalid, ShapeInvalid, flag, integer, number
from falconchat.types import SamplingParams

T = TypeVar("T", int, float)


@dataclass(frozen=True)
class GenerateRequest:
    inputs: str
    params: SamplingParams  # temperature 0 means greedy; seed set whenever sampling
    stops: tuple[str, ...]
    stream: bool
    details: bool
    decoder_input_details: bool
    return_full_text: bool
    truncate: int | None
    top_n_tokens: int  # 0: none
    sampling: bool
    seed: int | None  # as reported back in `details` (null for greedy)


def parse_request(payload: Any, limits: Limits, *, stream: bool | None = None) -> GenerateRequest:
    """Validate a `/generate` (`stream=False`), `/generate_stream` (`True`) or `/` (from the body) request."""
    inputs, params, compat, stream = _body(payload, stream)
    if stream and params.get("decoder_input_details"):
        raise RequestInvalid("`decoder_input_details` == true is not supported when streaming tokens")

    _checked(params, "best_of", integer, lambda v: v == 1, "must be > 0 and <= 1")  # one sequence per request
    temperature = _checked(params, "temperature", number, lambda v: v > 0, "must be strictly positive")
    repetition_penalty = _checked(params, "repetition_penalty", number, lambda v: v > 0, "must be strictly positive")
    frequency_penalty = _checked(
        params, "frequency_penalty", number, lambda v: -2 <= v <= 2, "must be >= -2.0 and <= 2.0"
    )
    top_p = _checked(params, "top_p", number, lambda v: 0 < v < 1, "must be > 0.0 and < 1.0")
    typical_p = _checked(params, "typical_p", number, lambda v: 0 < v < 1, "must be > 0.0 and < 1.0")
    top_k = _checked(params, "top_k", integer, lambda v: v > 0, "must be strictly positive")
    max_new_tokens = _checked(params, "max_new_tokens", integer, lambda v: v >= 1, "must be strictly positive")
    seed = _checked(params, "seed", integer, lambda v: 0 <= v < 2**64, "must be a non-negative integer")
    longest, most = limits.max_input_tokens, limits.max_top_n_tokens
    truncate = _checked(
        params, "truncate", integer, lambda v: 0 < v <= longest, f"must be strictly positive and less than {longest}"
    )
    top_n_tokens = _checked(
        params, "top_n_tokens", integer, lambda v: 0 <= v <= most, f"must be >= 0 and <= {most}"
    )  # as TGI says it
    constraint = grammar_constraint(params.get("grammar"))
    stops = _stops(params, limits)

    # TGI samples when asked to, or when any sampling setting moves away from its neutral value.
    sampling = (
        flag(params, "do_sample")
        or (temperature is not None and temperature != 1.0)
        or top_k is not None
        or (top_p is not None and top_p < 1.0)
        or (typical_p is not None and typical_p < 1.0)
    )
    if sampling and seed is None:
        seed = random.getrandbits(32)
    return GenerateRequest(
        inputs=inputs,
        params=SamplingParams(
            temperature=(temperature if temperature is not None else 1.0) if sampling else 0.0,
            max_new_tokens=max_new_tokens or 0,  # 0: not given (see `resolve_max_new_tokens`)
            top_p=top_p if top_p is not None else 1.0,
            top_k=top_k or 0,
            repetition_penalty=repetition_penalty if repetition_penalty is not None else 1.0,
            frequency_penalty=frequency_penalty or 0.0,
            typical_p=typical_p if typical_p is not None else 1.0,
            seed=seed % 2**31 if seed is not None else None,
            stop=tuple(stops),
            constraint=constraint,
        ),
        stops=tuple(stops),
        stream=stream,
        details=flag(params, "details"),
        decoder_input_details=flag(params, "decoder_input_details"),
        # As TGI for a text-generation model: `POST /` returns the full text unless told otherwise.
        return_full_text=flag(params, "return_full_text") if params.get("return_full_text") is not None else compat,
        truncate=truncate,
        top_n_tokens=top_n_tokens or 0,
        sampling=sampling,
        seed=seed if sampling else None,
    )


def _body(payload: Any, stream: bool | None) -> tuple[str, dict, bool, bool]:
    """(inputs, parameters, whether it came to `/` (TGI's compatible route), whether to stream)."""
    if not isinstance(payload, dict):
        raise ShapeInvalid("the body must be a JSON object with `inputs`")
    inputs = payload.get("inputs")
    if not isinstance(inputs, str):
        raise ShapeInvalid("`inputs` must be a string")
    if not inputs:
        raise RequestInvalid("`inputs` cannot be empty")
    params = payload.get("parameters")
    params = {} if params is None else params  # only null means "not given": [] or "" are wrong types
    if not isinstance(params, dict):
        raise ShapeInvalid("`parameters` must be an object")
    compat = stream is None
    if stream is None:
        stream = payload.get("stream", False)
        if not isinstance(stream, bool):
            raise ShapeInvalid("`stream` must be true or false")
    return inputs, params, compat, stream


def _checked(
    params: dict, name: str, read: Callable[[dict, str], T | None], ok: Callable[[T], bool], rule: str
) -> T | None:
    """The parameter `name`, read as `read` does (None: not given); refused, as TGI words it, unless `ok`."""
    value = read(params, name)
    if value is not None and not ok(value):
        raise RequestInvalid(f"`{name}` {rule}. Given: {value}")
    return value


def _stops(params: dict, limits: Limits) -> list[str]:
    """The stop sequences: a list of non-empty strings, no more than the limit."""
    stops = params.get("stop")
    stops = [] if stops is None else stops
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ShapeInvalid("`stop` must be a list of strings")
    if not all(stops):
        raise RequestInvalid("`stop` must be a list of non-empty strings")
    if len(stops) > limits.max_stop_sequences:
        raise RequestInvalid(f"`stop` supports up to {limits.max_stop_sequences} stop sequences. Given: {len(stops)}")
    return stops

"""`serve`: reading and validating the generate API's requests (`/`, `/generate`,
`/generate_stream`), with TGI's rules, before any work reaches the model.

Everything here is pure: a parsed JSON body in, a `GenerateRequest` or a `RequestInvalid` out.
Unknown fields are ignored and never passed on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from falconchat.serve.structured import grammar_constraint
from falconchat.serve.validation import Limits, RequestInvalid, ShapeInvalid, flag, integer, number
from falconchat.types import SamplingParams


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
    if stream and params.get("decoder_input_details"):
        raise RequestInvalid("`decoder_input_details` == true is not supported when streaming tokens")

    best_of = integer(params, "best_of")
    if best_of is not None and best_of != 1:
        raise RequestInvalid(f"`best_of` must be > 0 and <= 1. Given: {best_of}")
    temperature = number(params, "temperature")
    if temperature is not None and temperature <= 0:
        raise RequestInvalid(f"`temperature` must be strictly positive. Given: {temperature}")
    repetition_penalty = number(params, "repetition_penalty")
    if repetition_penalty is not None and repetition_penalty <= 0:
        raise RequestInvalid(f"`repetition_penalty` must be strictly positive. Given: {repetition_penalty}")
    frequency_penalty = number(params, "frequency_penalty")
    if frequency_penalty is not None and not -2 <= frequency_penalty <= 2:
        raise RequestInvalid(f"`frequency_penalty` must be >= -2.0 and <= 2.0. Given: {frequency_penalty}")
    top_p = number(params, "top_p")
    if top_p is not None and not 0 < top_p < 1:
        raise RequestInvalid(f"`top_p` must be > 0.0 and < 1.0. Given: {top_p}")
    typical_p = number(params, "typical_p")
    if typical_p is not None and not 0 < typical_p < 1:
        raise RequestInvalid(f"`typical_p` must be > 0.0 and < 1.0. Given: {typical_p}")
    top_k = integer(params, "top_k")
    if top_k is not None and top_k <= 0:
        raise RequestInvalid(f"`top_k` must be strictly positive. Given: {top_k}")
    max_new_tokens = integer(params, "max_new_tokens")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise RequestInvalid(f"`max_new_tokens` must be strictly positive. Given: {max_new_tokens}")
    seed = integer(params, "seed")
    if seed is not None and not 0 <= seed < 2**64:
        raise RequestInvalid(f"`seed` must be a non-negative integer. Given: {seed}")
    truncate = integer(params, "truncate")
    if truncate is not None and not 0 < truncate <= limits.max_input_tokens:
        raise RequestInvalid(
            f"`truncate` must be strictly positive and less than {limits.max_input_tokens}. Given: {truncate}"
        )
    top_n_tokens = integer(params, "top_n_tokens")
    if top_n_tokens is not None and not 0 <= top_n_tokens <= limits.max_top_n_tokens:
        raise RequestInvalid(
            f"`top_n_tokens` must be >= 0 and <= {limits.max_top_n_tokens}. Given: {top_n_tokens}"
        )  # as TGI says it
    constraint = grammar_constraint(params.get("grammar"))
    stops = params.get("stop")
    stops = [] if stops is None else stops
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ShapeInvalid("`stop` must be a list of strings")
    if not all(stops):
        raise RequestInvalid("`stop` must be a list of non-empty strings")
    if len(stops) > limits.max_stop_sequences:
        raise RequestInvalid(f"`stop` supports up to {limits.max_stop_sequences} stop sequences. Given: {len(stops)}")

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

"""`batch` input in OpenAI's batch-file format (which `vllm run-batch` reads too).

A line is {"custom_id", "method": "POST", "url", "body"}: `url` /v1/chat/completions
takes `body.messages`, /v1/completions takes `body.prompt` (answered as one user
message: our backends speak chat). The body's OpenAI fields map to our sampling
values. A line whose custom_id is usable but whose request is not (an unknown url,
`stream: true`, `n > 1`, a repeated custom_id, a value we cannot honour) becomes an
item with `refused` set: its error row is written in its place and the rest runs, as
`vllm run-batch` does. A line with no usable custom_id cannot have a row: it is a bad
line, reported on stderr like a bad line of our own format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from falconchat.batch.input import BadLine, Item, Parsed, _check_size, _conversation
from falconchat.config_values import parse
from falconchat.errors import ConfigError, InputError, UsageError
from falconchat.structured import checked_schema
from falconchat.types import Constraint, SamplingParams, Turn

ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
SUPPORTED = ", ".join(ENDPOINTS)
OPENAI_KEYS = ("custom_id", "method", "url", "body")
OURS_KEYS = ("prompt", "messages")
# Fields a request may carry that change nothing we do (accounting, tracing, storage).
QUIET_FIELDS = {"model", "user", "metadata", "store", "service_tier", "stream_options", "parallel_tool_calls"}
MAPPED_FIELDS = {
    "messages",
    "prompt",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    "stream",
    "n",
    "logprobs",
    "top_logprobs",
}
# Fields whose presence asks for something falconchat cannot do: the line's error row.
UNSUPPORTED_FIELDS = ("tools", "functions", "logit_bias", "audio", "prediction", "suffix", "best_of", "echo")
MAX_REQUESTS = 50_000  # OpenAI's Batch API's limit per file


def kind_of(obj: Any) -> str | None:
    """ "openai", "ours" or None (not an object, or neither's fields)."""
    if not isinstance(obj, dict):
        return None
    if any(key in obj for key in OPENAI_KEYS):
        return "openai"
    if any(key in obj for key in OURS_KEYS):
        return "ours"
    return None


def detect(lines: list[str], chosen: str) -> str:
    """The input's format: "openai", "jsonl" or "lines". A file mixing OpenAI's lines and ours
    is refused, naming the first line of each (auto and openai alike)."""
    if chosen in ("jsonl", "lines"):
        return chosen
    first: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        if not text.startswith("{"):
            if chosen == "auto" and not first:
                return "lines"
            continue
        try:
            found = kind_of(json.loads(text))
        except json.JSONDecodeError:
            continue
        if found is not None:
            first.setdefault(found, number)
        if len(first) == 2:
            raise InputError(
                f"line {first['openai']} is an OpenAI batch request and line {first['ours']} is falconchat's own "
                '{"id", "prompt"} line: one format per file'
            )
    if chosen == "openai" or "openai" in first:
        return "openai"
    return "jsonl"


def parse_openai(lines: Iterable[str], system: str, params: SamplingParams, max_bytes: int) -> Parsed:
    """Every line with a custom_id becomes an item (refused or not), in input order; the rest are bad lines."""
    parsed = Parsed()
    seen: dict[str, int] = {}
    models: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            parsed.bad.append((number, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(obj, dict):
            parsed.bad.append((number, "not a JSON object"))
            continue
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            parsed.bad.append((number, "custom_id must be a non-empty string (it names the request's row)"))
            continue
        item = Item(line=number, id=custom_id, system=system, history=(), message="", params=params)
        try:
            if custom_id in seen:
                raise BadLine(f"custom_id {custom_id!r} was already used on line {seen[custom_id]}")
            seen[custom_id] = number
            item = _request(item, obj, max_bytes, parsed.ignored_fields, models)
        except BadLine as exc:
            item = Item(
                line=number, id=custom_id, system=system, history=(), message="", params=params, refused=str(exc)
            )
        parsed.items.append(item)
    parsed.models = models
    return parsed


def _request(item: Item, obj: dict, max_bytes: int, ignored: dict[str, int], models: dict[str, int]) -> Item:
    url = obj.get("url")
    if url not in ENDPOINTS:
        raise BadLine(f"URL {url} was used. Supported endpoints: {SUPPORTED}")
    if obj.get("method", "POST") != "POST":
        raise BadLine(f"method {obj.get('method')!r} was used; a batch request is a POST")
    body = obj.get("body")
    if not isinstance(body, dict):
        raise BadLine("body must be a JSON object (the request's body)")
    api = ENDPOINTS[url]
    model = body.get("model")
    if isinstance(model, str):
        models.setdefault(model, item.line)
    if body.get("stream"):
        raise BadLine("stream: true is not supported in a batch file (each row holds the whole reply)")
    if body.get("n", 1) not in (1, None):
        raise BadLine(f"n = {body.get('n')!r} is not supported: one choice per request (n must be 1)")
    for name in UNSUPPORTED_FIELDS:
        if _asks_for(name, body.get(name)):
            raise BadLine(f"{name} is not supported by falconchat batch")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise BadLine("tool_choice is not supported by falconchat batch")
    for name in body.keys() - MAPPED_FIELDS - QUIET_FIELDS - set(UNSUPPORTED_FIELDS) - {"tool_choice"}:
        ignored.setdefault(f"body.{name}", item.line)
    system, message = item.system, ""
    history: tuple[Turn, ...] = ()
    if api == "chat":
        history, message, own_system = _conversation(_plain_messages(body.get("messages")))
        system = own_system if own_system is not None else system
    else:
        message = _prompt(body.get("prompt"))
    _check_size(system + message + "".join(t.user + t.assistant for t in history), max_bytes)
    return Item(
        line=item.line,
        id=item.id,
        system=system,
        history=history,
        message=message,
        params=_sampling(body, item.params),
        api=api,
    )


def _asks_for(name: str, value: Any) -> bool:
    """Whether a field we cannot honour asks for anything (an empty list or best_of 1 does not)."""
    if value is None or value is False or value in ([], {}, ""):
        return False
    return not (name == "best_of" and value == 1)


def _plain_messages(messages: Any) -> Any:
    """OpenAI's messages as {role, content} strings: `developer` is the system role, and a
    content given as text parts is their text joined."""
    if not isinstance(messages, list):
        raise BadLine("body.messages must be a non-empty list of {role, content}")
    plain = []
    for message in messages:
        if not isinstance(message, dict):
            raise BadLine("each message must be an object with role and content")
        role = "system" if message.get("role") == "developer" else message.get("role")
        content = message.get("content")
        if isinstance(content, list):
            if not all(
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
            ):
                raise BadLine("only text content parts are supported (no images or audio)")
            content = "".join(p["text"] for p in content)
        plain.append({"role": role, "content": content})
    return plain


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadLine("body.prompt must be a non-empty string (one prompt per request)")
    return prompt


def _sampling(body: dict, params: SamplingParams) -> SamplingParams:
    changes: dict[str, Any] = {}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        changes["max_new_tokens"] = _setting("max_new_tokens", limit, "max_tokens")
    for name in ("temperature", "top_p", "seed"):
        if body.get(name) is not None:
            changes[name] = _setting(name, body[name], name)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
            raise BadLine("stop must be a string or a list of at most 4 non-empty strings")
        changes["stop"] = tuple(stops)
    for name in ("frequency_penalty", "presence_penalty"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadLine(f"{name} must be a number from -2 to 2")
            if not -2 <= value <= 2:
                raise BadLine(f"{name} must be a number from -2 to 2, not {value}")
            changes[name] = float(value)
    constraint = _response_format(body.get("response_format"))
    if constraint is not None:
        changes["constraint"] = constraint
    logprobs = _logprobs(body)
    if logprobs is not None:
        changes["logprobs"] = logprobs
    return params.with_changes(**changes) if changes else params


def _logprobs(body: dict) -> int | None:
    """How many alternatives each token's logprob comes with, as the API asks: the chat API's
    `logprobs: true` and `top_logprobs` (0-20), the completions API's `logprobs` (0-5); None:
    not asked. The replica gives them or not (falconchat does not invent them)."""
    value, top = body.get("logprobs"), body.get("top_logprobs")
    if value is None or value is False:
        if top not in (None, 0):
            raise BadLine("top_logprobs needs logprobs: true")
        return None
    if value is True:
        if top is None:
            return 0
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
            raise BadLine("top_logprobs must be an integer from 0 to 20")
        return top
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
        raise BadLine("logprobs must be true (chat) or an integer from 0 to 5 (completions)")
    return value


def _setting(name: str, value: Any, shown: str) -> Any:
    try:
        return parse(name, value, "the body")
    except ConfigError as exc:
        raise BadLine(exc.message.replace(" (from the body)", "").replace(name.replace("_", "-"), shown)) from None


def _response_format(value: Any) -> Constraint | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return Constraint("json")
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        try:
            return Constraint("json_schema", checked_schema(schema, "response_format.json_schema.schema"))
        except UsageError as exc:
            raise BadLine(exc.message) from None
    raise BadLine(f"response_format type {kind!r} is not supported (text, json_object or json_schema)")

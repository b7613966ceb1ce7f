"""`batch` input: JSON Lines or one prompt per line, checked line by line before anything runs.

A JSON line is an object: `id` (string or integer; the line number when left
out), `prompt` or `messages` ([{role, content}], system/user/assistant, ending
with user), optional `system` and sampling values (`temperature`,
`max_new_tokens` or `max_tokens`, `top_p`, `top_k`, `repetition_penalty`,
`seed`, `stop`), `schema` (a JSON Schema object, or the short form "name, age int":
the reply must validate against it), and `files` (sources, as -f takes them, put before
the prompt: command.py reads them). Other fields are ignored (datasets carry their own), with one
warning per field name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from falconchat.config_values import SAMPLING_KEYS, parse
from falconchat.errors import ConfigError, UsageError
from falconchat.structured import checked_schema, short_schema
from falconchat.types import Constraint, SamplingParams, Turn

KNOWN_FIELDS = {"id", "prompt", "messages", "system", "max_tokens", "schema", "files", *SAMPLING_KEYS}
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Item:
    line: int  # 1-based line in the input
    id: str | int
    system: str
    history: tuple[Turn, ...]  # earlier exchanges, from `messages`
    message: str  # the user message to answer
    params: SamplingParams
    api: str = ""  # an OpenAI batch line's endpoint: "chat" or "completions"; "" for falconchat's own
    refused: str | None = None  # why an OpenAI batch line cannot run: its error row, without a request
    files: tuple[str, ...] = ()  # sources for the message (files, folders, globs, URLs), read before running

    @property
    def key(self) -> str:
        """The id as it compares across runs (1 and "1" are different ids)."""
        return id_key(self.id)


@dataclass
class Parsed:
    items: list[Item] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)
    ignored_fields: dict[str, int] = field(default_factory=dict)  # name -> first line with it
    models: dict[str, int] = field(default_factory=dict)  # an OpenAI body's `model` -> first line with it


class BadLine(ValueError):
    pass


def id_key(value: Any) -> str:
    return json.dumps(value)


def detect_format(lines: list[str], chosen: str) -> str:
    if chosen in ("jsonl", "lines"):
        return chosen
    first = next((line for line in lines if line.strip()), "")
    return "jsonl" if first.lstrip().startswith("{") else "lines"


def parse_lines(lines: Iterable[str], fmt: str, system: str, params: SamplingParams, max_bytes: int) -> Parsed:
    """Every usable item and every bad line (with its number); blank lines are skipped."""
    parsed = Parsed()
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            if fmt == "lines":
                item = _plain_item(number, raw.strip(), system, params, max_bytes)
            else:
                item = _json_item(number, raw, system, params, max_bytes, parsed.ignored_fields)
            if item.key in seen:
                raise BadLine(f"id {item.id!r} was already used on line {seen[item.key]}")
        except BadLine as exc:
            parsed.bad.append((number, str(exc)))
            continue
        seen[item.key] = number
        parsed.items.append(item)
    return parsed


def _plain_item(number: int, text: str, system: str, params: SamplingParams, max_bytes: int) -> Item:
    _check_size(text, max_bytes)
    return Item(line=number, id=number, system=system, history=(), message=text, params=params)


def _json_item(
    number: int, raw: str, system: str, params: SamplingParams, max_bytes: int, ignored: dict[str, int]
) -> Item:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine("not a JSON object")
    for name in obj.keys() - KNOWN_FIELDS:
        ignored.setdefault(name, number)
    item_id = obj.get("id", number)
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
        raise BadLine("id must be a string or an integer")
    if ("prompt" in obj) == ("messages" in obj):
        raise BadLine('give either "prompt" or "messages"')
    own_system = obj.get("system")
    if own_system is not None and not isinstance(own_system, str):
        raise BadLine("system must be a string")
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise BadLine("prompt must be a non-empty string")
        history: tuple[Turn, ...] = ()
        message, from_messages = obj["prompt"], None
    else:
        history, message, from_messages = _conversation(obj["messages"])
    if own_system is not None and from_messages is not None:
        raise BadLine('give the system message once: in "system" or in "messages"')
    chosen_system = next((s for s in (own_system, from_messages) if s is not None), system)
    _check_size(chosen_system + message + "".join(t.user + t.assistant for t in history), max_bytes)
    return Item(
        line=number,
        id=item_id,
        system=chosen_system,
        history=history,
        message=message,
        params=_sampling(obj, params, number),
        files=_files(obj.get("files")),
    )


def _files(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(name, str) and name.strip() for name in raw):
        raise BadLine("files must be a list of sources (paths, globs, URLs)")
    if "-" in raw:
        raise BadLine("files: '-' (standard input) is not a source in batch")
    return tuple(raw)


def _conversation(messages: Any) -> tuple[tuple[Turn, ...], str, str | None]:
    """[{role, content}] -> (earlier turns, the last user message, the system message or None)."""
    if not isinstance(messages, list) or not messages:
        raise BadLine("messages must be a non-empty list of {role, content}")
    system_parts: list[dict[str, str]] = []
    rest: list[dict[str, str]] = []
    for message in messages:
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise BadLine('each message needs "role" (system, user or assistant) and "content" (a string)')
        (system_parts if message["role"] == "system" else rest).append(message)
    roles = [m["role"] for m in rest]
    if not roles or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise BadLine("messages must alternate user and assistant, and end with user")
    turns = tuple(Turn(user=rest[i]["content"], assistant=rest[i + 1]["content"]) for i in range(0, len(rest) - 1, 2))
    system = "\n".join(m["content"] for m in system_parts) if system_parts else None
    return turns, rest[-1]["content"], system


def _sampling(obj: dict, params: SamplingParams, number: int) -> SamplingParams:
    """The line's own sampling values over the command's, checked as flags are."""
    if "max_tokens" in obj and "max_new_tokens" in obj:
        raise BadLine("give max_new_tokens or max_tokens, not both")
    changes = {}
    for key in (*SAMPLING_KEYS, "max_tokens"):
        if key in obj and obj[key] is not None:
            name = "max_new_tokens" if key == "max_tokens" else key
            try:
                changes[name] = parse(name, obj[key], f"line {number}")
            except ConfigError as exc:
                raise BadLine(exc.message.replace(f" (from line {number})", "")) from None
    if obj.get("schema") is not None:
        changes["constraint"] = _schema(obj["schema"])
    return params.with_changes(**changes) if changes else params


def _schema(raw: Any):
    """A line's own `schema`: a JSON Schema object, or the short form ("name, age int")."""

    try:
        schema = short_schema(raw) if isinstance(raw, str) else checked_schema(raw, "schema")
    except UsageError as exc:
        raise BadLine(exc.message.replace("--schema", "schema")) from None
    return Constraint("json_schema", schema)


def _check_size(text: str, max_bytes: int) -> None:
    if len(text.encode("utf-8", "replace")) > max_bytes:
        raise BadLine(f"larger than {max_bytes} bytes (FALCONCHAT_MAX_INPUT_BYTES)")

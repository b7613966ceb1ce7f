"""Structured output: `--schema` and `--json-mode` become a `Constraint`, and every reply
is checked against it — it fails closed.

A backend passes the constraint on in its own way, and servers differ in what they
honour (some answer 200 with prose when they do not know the parameter). So nothing
is trusted: the reply is parsed and validated here, and one that does not match is
an `InvalidReply` (exit 5) with the first validation error, never a silent success.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from falconchat.errors import InvalidReply, UsageError
from falconchat.text import sanitize
from falconchat.types import Constraint

# The short form is bounded: a grammar without bounds lets a small model run on forever
# (a tag list that never closes, until max-new-tokens: exit 5 after minutes). A JSON Schema
# given whole is taken as it is.
MAX_LIST_ITEMS = 8
MAX_ITEM_CHARS = 40
SHORT_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array", "items": {"type": "string", "maxLength": MAX_ITEM_CHARS}, "maxItems": MAX_LIST_ITEMS},
}
FIELD = re.compile(r"^([A-Za-z_][\w-]*)(?:\s+(\w+))?\s*(?::\s*(.*))?$")
MAX_SHOWN = 200  # of a validation message


def schema_constraint(text: str, cwd: Path | None = None) -> Constraint:
    """`--schema`: a JSON Schema file, inline JSON, or the short form `name, age int, tags list`."""
    text = text.strip()
    if not text:
        raise UsageError("--schema is empty: give a JSON Schema file, inline JSON, or fields such as 'name, age int'")
    if text.startswith("{"):
        schema = _json(text, "--schema")
    else:
        path = Path(text) if cwd is None else cwd / text
        if path.is_file() or text.endswith(".json"):
            try:
                schema = _json(path.read_text(encoding="utf-8"), f"the schema file {text}")
            except OSError as exc:
                raise UsageError(f"cannot read the schema file {text}: {exc.strerror}") from None
        else:
            schema = short_schema(text)
    return Constraint("json_schema", checked_schema(schema))


def json_mode() -> Constraint:
    return Constraint("json")


def short_schema(text: str) -> dict:
    """`name, age int, bio: a short bio` (commas or new lines between fields; str unless a type
    of str, int, float, bool, list follows the name): an object whose fields are all required."""
    properties: dict[str, dict] = {}
    for part in re.split(r"[,\n]", text):
        part = part.strip()
        if not part:
            continue
        match = FIELD.match(part)
        if match is None:
            raise UsageError(
                f"--schema: cannot read the field {sanitize(part)!r}; write 'name', 'name int', 'name: what'"
            )
        name, kind, description = match.groups()
        if (kind or "str") not in SHORT_TYPES:
            raise UsageError(f"--schema: unknown type {kind!r} for {name!r}; use one of {', '.join(SHORT_TYPES)}")
        prop = dict(SHORT_TYPES[kind or "str"])
        if description:
            prop["description"] = description
        properties[name] = prop
    if not properties:
        raise UsageError("--schema names no fields")
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def checked_schema(schema: Any, where: str = "--schema") -> dict:
    from jsonschema import Draft202012Validator  # noqa: PLC0415 (heavy: jsonschema)
    from jsonschema.exceptions import SchemaError  # noqa: PLC0415 (heavy: jsonschema)

    if not isinstance(schema, dict):
        raise UsageError(f"{where}: a JSON Schema is a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise UsageError(f"{where} is not a valid JSON Schema: {_short(exc.message)}") from None
    return schema


def check_reply(
    text: str, constraint: Constraint | None, *, cut: bool = False, setting: str = "--max-new-tokens"
) -> Any:
    """The reply's parsed value, or `InvalidReply` with the first reason it does not fit.
    Without a JSON constraint there is nothing to check: None. `cut`: the reply stopped
    at max-new-tokens, which a grammar cannot prevent, so the error says so, naming how
    to raise it (`setting`: a flag, or the REPL's /set)."""
    if constraint is None or constraint.kind not in ("json", "json_schema"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if cut:
            raise InvalidReply(
                f"the reply stopped at max-new-tokens before its JSON was complete ({_where(exc)}); raise {setting}"
            ) from None
        shown = _short(text.strip()) or "nothing"
        raise InvalidReply(f"the reply is not JSON ({_where(exc)}): {shown}") from None
    if constraint.kind == "json":
        if not isinstance(value, dict):
            raise InvalidReply(f"the reply is JSON but not an object: {_short(text.strip())}")
        return value
    from jsonschema import Draft202012Validator  # noqa: PLC0415 (heavy: jsonschema)
    from jsonschema.exceptions import best_match  # noqa: PLC0415 (heavy: jsonschema)

    error = best_match(Draft202012Validator(constraint.value).iter_errors(value))
    if error is not None:
        where = error.json_path
        raise InvalidReply(f"the reply does not match the schema: {where}: {_short(error.message)}")
    return value


def _where(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg.removesuffix(' at')} at character {exc.pos}"


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


def _short(text: str) -> str:
    """One safe line: no control sequences, no line breaks, not too long."""
    line = " ".join(sanitize(text).split())
    return line if len(line) <= MAX_SHOWN else line[: MAX_SHOWN - 1] + "…"

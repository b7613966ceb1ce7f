"""`serve`: structured-output requests to a `Constraint` — TGI's `grammar` (generate API) and
`response_format` (Messages API, in TGI's and OpenAI's spellings) — checked and compiled once
here, so that a bad schema or regex is a 422 before anything is queued."""

from __future__ import annotations

from typing import Any

from falconchat.backends.grammar import compile_constraint
from falconchat.errors import InputError
from falconchat.serve.validation import RequestInvalid
from falconchat.types import Constraint


def grammar_constraint(grammar: Any) -> Constraint | None:
    """TGI's `parameters.grammar`: {"type": "json" | "regex" | "json_schema", "value": …}."""
    if grammar is None:
        return None
    if not isinstance(grammar, dict) or "type" not in grammar or "value" not in grammar:
        raise RequestInvalid('`grammar` must be an object with `type` ("json", "json_schema" or "regex") and `value`')
    kind, value = grammar["type"], grammar["value"]
    if kind == "json":
        return _checked(Constraint("json_schema", value))
    if kind == "json_schema":
        if not isinstance(value, dict) or "schema" not in value:
            raise RequestInvalid('`grammar` of type "json_schema" needs `value.schema`')
        return _checked(Constraint("json_schema", value["schema"]))
    if kind == "regex":
        return _checked(Constraint("regex", value))
    raise RequestInvalid(f'`grammar.type` must be "json", "json_schema" or "regex". Given: {str(kind)[:40]}')


def response_format_constraint(response_format: Any) -> Constraint | None:
    """`response_format`: OpenAI's {"type": "text" | "json_object"} and {"type": "json_schema",
    "json_schema": {"schema": …}}, or TGI's grammar objects ({"type": "json", "value": …})."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or not isinstance(response_format.get("type"), str):
        raise RequestInvalid("`response_format` must be an object with a `type`")
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return _checked(Constraint("json"))
    if kind == "json_schema" and "json_schema" in response_format:
        config = response_format["json_schema"]
        if not isinstance(config, dict) or "schema" not in config:
            raise RequestInvalid("`response_format.json_schema` needs a `schema`")
        return _checked(Constraint("json_schema", config["schema"]))
    if "value" in response_format:
        return grammar_constraint(response_format)
    raise RequestInvalid(
        '`response_format.type` must be "text", "json_object" or "json_schema" (or TGI\'s "json" and "regex" '
        "with a `value`)"
    )


def _checked(constraint: Constraint) -> Constraint:
    """Compiled now, in the handler: a bad one is a 422, never a failed stream."""

    try:
        return Constraint("gbnf", compile_constraint(constraint))
    except InputError as exc:
        raise RequestInvalid(exc.message) from None

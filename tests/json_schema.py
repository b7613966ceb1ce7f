"""A small JSON Schema checker for the schemas in docs/ (no jsonschema dependency).

It knows the keywords those schemas use — type, enum, required, properties,
additionalProperties: false, items, minimum, oneOf, $ref (within a file and to
a sibling file) — and refuses a schema that uses any other, so a schema can't
quietly grow a rule these tests would ignore.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs"
KNOWN = {
    "$schema",
    "$id",
    "$defs",
    "title",
    "description",
    "type",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minimum",
    "oneOf",
    "$ref",
}
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def load(name: str) -> dict:
    return json.loads((DOCS / name).read_text())


def errors(value: Any, name: str, pointer: str = "") -> list[str]:
    """Every way `value` breaks docs/`name` (or its part at `pointer`, "/$defs/x"); empty when it conforms."""
    schema, root = _resolve(f"{name}#{pointer}", {})
    return _check(value, schema, root, "$")


def _resolve(ref: str, root: dict) -> tuple[dict, dict]:
    file, _, pointer = ref.partition("#")
    doc = load(file) if file else root
    node = doc
    for part in filter(None, pointer.split("/")):
        node = node[part]
    return node, doc


def _check(value: Any, schema: dict, root: dict, path: str) -> list[str]:
    unknown = set(schema) - KNOWN
    assert not unknown, f"the checker does not know {sorted(unknown)}"
    if "$ref" in schema:
        target, doc = _resolve(schema["$ref"], root)
        return _check(value, target, doc, path)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not _check(value, s, root, path)]
        return [] if len(matching) == 1 else [f"{path}: matches {len(matching)} of oneOf, not exactly 1"]
    problems: list[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[k](value) for k in kinds):
            return [f"{path}: {value!r} is not {' or '.join(kinds)}"]
    if "enum" in schema and not any(value == v and type(value) is type(v) for v in schema["enum"]):
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
        problems.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        problems += [f"{path}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            problems += [f"{path}: unexpected {key!r}" for key in value if key not in properties]
        for key, sub in properties.items():
            if key in value:
                problems += _check(value[key], sub, root, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, element in enumerate(value):
            problems += _check(element, schema["items"], root, f"{path}[{i}]")
    return problems

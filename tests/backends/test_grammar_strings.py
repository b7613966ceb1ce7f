"""A JSON string in a schema's grammar holds no raw control character: JSON forbids them, and
llama-cpp-python's converter (`char ::= [^"\\]`) let a line break in, so a small model could run
on inside a string (found by `--schema` on the bundled model: falconchat's check refused it)."""

from __future__ import annotations

from falconchat.backends.grammar import compile_constraint
from falconchat.types import Constraint


def test_string_characters_exclude_control_characters():
    gbnf = compile_constraint(Constraint("json_schema", {"type": "object", "properties": {"a": {"type": "string"}}}))
    [rule] = [line for line in gbnf.splitlines() if line.startswith("char ::=")]
    assert rule.startswith(r'char ::= [^"\\\x7F\x00-\x1F]')

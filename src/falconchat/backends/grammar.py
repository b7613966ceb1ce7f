"""Structured output for llama.cpp: a `Constraint` compiled to a GBNF grammar, and the grammar
sampler that holds a sequence to it.

JSON schemas and regexes go through llama-cpp-python's own converter (the one llama.cpp ships
as json-schema-to-grammar), after checks of our own, so that a bad schema or pattern is one
clear `InputError` before any work reaches the model.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import sys
import threading
from contextlib import contextmanager
from typing import Any

from falconchat.errors import InputError
from falconchat.types import Constraint

MAX_SCHEMA_BYTES = 64_000  # a schema compiles to a grammar the sampler walks for every token


def compile_constraint(constraint: Constraint) -> str:
    """The GBNF text (root rule `root`) that holds a reply to `constraint`."""
    if constraint.kind == "json_schema":
        return _json_schema_gbnf(constraint.value)
    if constraint.kind == "json":
        return _json_schema_gbnf({"type": "object"})
    if constraint.kind == "regex":
        return _regex_gbnf(constraint.value)
    if constraint.kind == "gbnf":
        if not isinstance(constraint.value, str) or not constraint.value.strip():
            raise InputError("the grammar must be non-empty GBNF text")
        return constraint.value
    raise InputError(f"unknown constraint kind: {constraint.kind!r}")


def check_json_schema(schema: Any) -> dict:
    """The schema, if it is a valid JSON schema (an object); otherwise an InputError."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise InputError(f"the JSON schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise InputError("the JSON schema must be a JSON object")
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise InputError(f"the JSON schema is larger than {MAX_SCHEMA_BYTES} bytes")
    from jsonschema import SchemaError, validators  # noqa: PLC0415 (heavy: jsonschema)

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top"
        raise InputError(f"invalid JSON schema at {where}: {_short(exc.message)}") from None
    return schema


def _json_schema_gbnf(schema: Any) -> str:
    schema = check_json_schema(schema)
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # noqa: PLC0415 (heavy: llama_cpp)

    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises whatever it meets (KeyError, AssertionError…)
        detail = f": {_short(str(exc))}" if str(exc) else ""
        raise InputError(f"cannot turn the JSON schema into a grammar ({type(exc).__name__}{detail})") from None
    # llama-cpp-python 0.3's converter lets a raw line break or other control character into a
    # string (`char ::= [^"\\]`), which is not JSON: a reply could run on inside a string until a
    # stop sequence cut it. JSON strings exclude U+0000-U+001F, as llama.cpp's own converter says.
    return gbnf.replace(_LOOSE_CHAR, _JSON_CHAR)


_LOOSE_CHAR = r'char ::= [^"\\]'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F]'


def _regex_gbnf(pattern: Any) -> str:
    """A grammar for text that matches the whole of `pattern` (as TGI's `regex` grammar)."""
    if not isinstance(pattern, str) or not pattern:
        raise InputError("the regex must be a non-empty string")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InputError(f"invalid regex: {exc}") from None
    # The whole reply matches: anchors the user wrote are implied.
    body = pattern[1:] if pattern.startswith("^") else pattern
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    from llama_cpp.llama_grammar import SchemaConverter  # noqa: PLC0415 (heavy: llama_cpp)

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=True)
    try:
        converter._visit_pattern(f"^{_plain_regex(body)}$", "root")
    except InputError:
        raise
    except Exception as exc:
        detail = f": {_short(str(exc))}" if str(exc) else ""
        raise InputError(f"cannot turn the regex into a grammar ({type(exc).__name__}{detail})") from None
    return converter.format_grammar()


# What llama.cpp's regex converter copes with: no shorthand classes, no (?…) groups, and only
# the escapes GBNF knows. Everything else is rewritten to a plain equivalent; a character that
# needs escaping becomes a one-character class, so that a quantifier after it applies to it whole.
_CLASSES = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\r"}
_CONVERTER_ESCAPES = set("[]()|{}*+?")  # the converter turns these back into plain characters


def _plain_regex(pattern: str) -> str:
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            plain, i = _plain_escape(pattern, i + 1, in_class)
            out.append(plain)
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == '"':
            char = _escape(char, False)
        elif pattern.startswith("(?", i):
            group = re.match(r"\(\?(:|P<\w+>)", pattern[i:])
            if group is None:
                raise InputError("invalid regex: lookarounds and (?...) flags cannot be compiled to a grammar")
            out.append("(")
            i += len(group.group(0))
            continue
        elif char in "*+?}" and pattern[i + 1 : i + 2] == "?":
            out.append(char)  # lazy or greedy, a grammar allows the same texts
            i += 2
            continue
        elif char in "^$":
            raise InputError("invalid regex: ^ and $ are only allowed at the ends")
        out.append(char)
        i += 1
    return "".join(out)


def _plain_escape(pattern: str, at: int, in_class: bool) -> tuple[str, int]:
    """The escape whose letter is at `at`, rewritten; and where the pattern goes on."""
    escaped = pattern[at]
    at += 1
    if escaped.lower() in _CLASSES:
        chars = _CLASSES[escaped.lower()]
        if not escaped.isupper():
            return (chars if in_class else f"[{chars}]"), at
        if in_class:
            raise InputError(f"invalid regex: \\{escaped} inside [...] cannot be compiled to a grammar")
        return f"[^{chars}]", at
    if escaped in "tnr\\" or (escaped in _CONVERTER_ESCAPES and not in_class) or (in_class and escaped in "[]"):
        return "\\" + escaped, at
    if escaped in "xu":
        digits = 2 if escaped == "x" else 4
        code = pattern[at : at + digits]  # re.compile checked the digits
        return _escape(chr(int(code, 16)), in_class), at + digits
    if escaped.isalnum():
        raise InputError(f"invalid regex: \\{escaped} cannot be compiled to a grammar")
    return _escape(escaped, in_class), at


def _escape(char: str, in_class: bool) -> str:
    code = f"\\x{ord(char):02X}" if ord(char) < 256 else f"\\u{ord(char):04X}"
    return code if in_class else f"[{code}]"


def grammar_sampler(vocab, gbnf: str):
    """A llama.cpp grammar sampler (a `llama_sampler*`) for `vocab`; the caller owns it (adding it
    to a chain hands it over). llama.cpp answers NULL, not an exception, to a grammar it cannot
    parse: that is an InputError here."""
    import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)

    with _quiet_stderr():
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise InputError("the grammar cannot be parsed (llama.cpp GBNF, with a `root` rule)")
    return sampler


class GrammarSampler:
    """Samples a token that keeps the reply inside a grammar, as llama.cpp's own server does:
    sample from the plain chain first and ask the grammar about that one token; only when it is
    refused, mask the whole vocabulary with the grammar (milliseconds per token on a large
    vocabulary) and sample again. Owns `chain` (a llama-cpp-python `LlamaSampler` without a
    grammar) and the grammar sampler."""

    def __init__(self, chain, vocab, gbnf: str, n_vocab: int):
        import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)
        import numpy as np  # noqa: PLC0415 (heavy: numpy)

        self._llama_cpp = llama_cpp
        self.chain = chain
        self.n_vocab = n_vocab
        self._grammar = None  # set first: close() runs even when the grammar does not parse
        self._grammar = grammar_sampler(vocab, gbnf)
        self._buffer = (llama_cpp.llama_token_data * n_vocab)()  # reused for every token
        self._view = np.ctypeslib.as_array(self._buffer)
        self._ids = np.arange(n_vocab, dtype=np.int32)

    def sample(self, ctx, row: int) -> int:
        """The next token from the logits of batch row `row` (-1: the last); both samplers accept it."""
        import numpy as np  # noqa: PLC0415 (heavy: numpy)

        llama_cpp = self._llama_cpp
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(self.n_vocab,))
        token = self._pick(logits, constrained=False)
        if not self._allows(token):
            token = self._pick(logits, constrained=True)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        return token

    def _pick(self, logits, *, constrained: bool) -> int:
        llama_cpp = self._llama_cpp
        self._view["id"] = self._ids
        self._view["logit"] = logits
        self._view["p"] = 0.0
        candidates = llama_cpp.llama_token_data_array(self._buffer, self.n_vocab, -1, False)
        if constrained:
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
        llama_cpp.llama_sampler_apply(self.chain.sampler, ctypes.byref(candidates))
        if candidates.selected < 0:
            raise RuntimeError("the sampler selected no token")
        return int(candidates.data[candidates.selected].id)

    def _allows(self, token: int) -> bool:
        one = self._llama_cpp.llama_token_data(token, 1.0, 0.0)
        single = self._llama_cpp.llama_token_data_array(ctypes.pointer(one), 1, -1, False)
        self._llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(single))
        return single.data[0].logit != -math.inf

    def close(self) -> None:
        if self._grammar is not None:
            self._llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None
        self.chain.close()

    def __del__(self) -> None:
        self.close()


_stderr_lock = threading.Lock()


@contextmanager
def _quiet_stderr():
    """llama.cpp prints a grammar's parse errors (with the grammar) straight to file descriptor 2,
    past its log callback: they would reach the user's terminal or serve's log. The parse takes
    milliseconds; whatever else the process writes to fd 2 meanwhile is lost with them."""
    sys.stderr.flush()
    with _stderr_lock:
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"

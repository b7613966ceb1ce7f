"""Issue 23 items 9 and 10, in a real terminal on the bundled model: a --schema reply cut at
max_new_tokens is not "continued" into a second JSON object; the chat's hints name what works
in the chat (/set max_new_tokens N), not a command-line flag; /show gives the schema as JSON."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.process  # the real falconchat in a pseudo-terminal

SCHEMA = ("--schema", "name, age int, tags list")


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_cut_schema_reply_is_not_continued_into_a_second_object(chats):
    chat = chats(*SCHEMA, "--max-new-tokens", "8")  # too few for any complete object
    shown = one_line(chat.say("Invent a character."))
    assert "before its JSON was complete" in shown
    assert "raise max_new_tokens (/set max_new_tokens N)" in shown and "--max-new-tokens" not in shown
    assert "/continue goes on" not in shown and "/set max_new_tokens N, then /retry" in shown
    before = chat.history()
    assert len(before) == 1 and before[0][1].lstrip().startswith("{")

    shown = one_line(chat.say("/continue"))
    assert "can't be continued" in shown and "/set max_new_tokens N (now 8), then /retry" in shown
    assert chat.history() == before  # no second "{" appended to the reply


def test_hints_in_the_chat_name_the_set_command_not_the_flag(chats):
    chat = chats("--max-new-tokens", "16", env={"FALCONCHAT_CONTEXT_LENGTH": "512"})
    chat.say("/set max_new_tokens 505")
    shown = one_line(chat.say("hello"))
    assert "leaves no room for the prompt" in shown
    assert "lower max_new_tokens (/set max_new_tokens N)" in shown and "--max-new-tokens" not in shown


def test_show_gives_the_schema_as_json(chats):
    chat = chats("--schema", "name, age int")
    shown = chat.say("/show")
    assert "Constraint(" not in shown and "'type'" not in shown
    line = next(line for line in shown.splitlines() if "schema = " in line)  # one line: the chat wraps softly
    schema = json.loads(line.split("schema = ", 1)[1])
    assert schema["properties"] == {"name": {"type": "string"}, "age": {"type": "integer"}}
    assert "schema = none" in chats().say("/show")

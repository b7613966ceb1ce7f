"""Issue 9, input: multi-line messages (bracketed paste, \"\"\" blocks, Alt+Enter), /edit and
Ctrl-X Ctrl-E in $EDITOR, Tab completion — each in a real pseudo-terminal."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from repl_helpers import ALT_ENTER, ENTER, PASTE_END, PASTE_START, TAB, write_config

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server


def test_a_multi_line_paste_arrives_as_one_message(chats):
    chat = chats()
    chat.type(PASTE_START + "pasted alpha\npasted beta\npasted gamma" + PASTE_END)
    # Nothing is sent by the paste itself: the newlines inside it are text, not Enter.
    shown = chat.keys(ENTER)
    assert "pasted gamma" in shown
    turns = chat.history()
    assert len(turns) == 1, turns
    assert turns[0][0] == "pasted alpha\npasted beta\npasted gamma"


def test_a_paste_with_a_trailing_newline_is_still_one_message(chats):
    chat = chats()
    chat.type(PASTE_START + "first pasted row\nsecond pasted row\n" + PASTE_END)
    chat.keys(ENTER)
    turns = chat.history()
    assert [user for user, _ in turns] == ["first pasted row\nsecond pasted row"]


def test_a_triple_quote_block_is_one_message_without_the_fences(chats):
    chat = chats()
    chat.keys('"""', ENTER, "block line one", ENTER, "block line two", ENTER, 'end"""', ENTER)
    turns = chat.history()
    assert len(turns) == 1, turns
    user = turns[0][0]
    assert user == "block line one\nblock line two\nend"
    assert '"""' not in user


def test_a_triple_quote_block_with_the_fence_on_its_own_line(chats):
    chat = chats()
    chat.keys('"""', ENTER, "What is the capital", ENTER, "of France?", ENTER, '"""', ENTER)
    turns = chat.history()
    assert [user for user, _ in turns] == ["What is the capital\nof France?"]
    assert turns[0][1]  # and answered


def test_alt_enter_adds_a_line_instead_of_sending(chats):
    chat = chats()
    chat.type("first typed line", ALT_ENTER, "second typed line", ALT_ENTER, "third typed line")
    shown = chat.keys(ENTER)
    assert "third typed line" in shown
    turns = chat.history()
    assert len(turns) == 1, turns
    assert turns[0][0] == "first typed line\nsecond typed line\nthird typed line"


def test_a_slash_line_inside_a_multi_line_message_is_text_not_a_command(chats):
    chat = chats()
    chat.keys("/clear", ALT_ENTER, "is what I typed", ENTER)
    assert [user for user, _ in chat.history()] == ["/clear\nis what I typed"]


def test_tab_completes_a_slash_command(chats):
    chat = chats()
    chat.say("What is the capital of France?")
    shown = chat.keys("/hi", TAB, ENTER)
    assert "You: What is the capital of France?" in shown
    # "smollm2: " or, when the reply reached max_new_tokens (the model's choice), "smollm2 (length limit): "
    assert re.search(r"^smollm2( \(length limit\))?: ", shown, re.MULTILINE), shown


def test_tab_completes_a_set_parameter_name(chats):
    chat = chats()
    shown = chat.keys("/set rep", TAB, " 1.3", ENTER)
    assert "repetition_penalty = 1.3" in shown
    shown = chat.keys("/set max_n", TAB, " 7", ENTER)
    assert "max_new_tokens = 7" in shown
    assert "max_new_tokens = 7" in chat.say("/show")


def test_tab_completes_model_and_role_names_from_the_config(chats, tmp_path):
    write_config(
        tmp_path, '[roles.librarian]\nsystem = "You answer like a librarian."\n[models.localtwin]\nbackend = "local"\n'
    )
    chat = chats()
    assert "role librarian" in chat.keys("/role lib", TAB, ENTER)
    assert "You answer like a librarian." in chat.say("/system")
    shown = chat.keys("/model localt", TAB, ENTER)
    assert "now talking to localtwin" in shown


def _editor(tmp_path: Path, text: str) -> Path:
    """An $EDITOR that writes `text` into the file it is given."""
    script = tmp_path / "fake-editor"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{text}' > \"$1\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_slash_edit_sends_what_the_editor_wrote(chats, tmp_path):
    editor = _editor(tmp_path, "What is the capital of France?")
    chat = chats(env={"EDITOR": str(editor), "VISUAL": ""})
    chat.say("/edit")
    assert [(user, bool(reply)) for user, reply in chat.history()] == [("What is the capital of France?", True)]


def test_slash_edit_with_an_empty_file_sends_nothing(chats, tmp_path):
    editor = _editor(tmp_path, "")
    chat = chats(env={"EDITOR": str(editor), "VISUAL": ""})
    assert "nothing sent" in chat.say("/edit")
    assert chat.history() == []


def test_ctrl_x_ctrl_e_edits_the_message_being_written(chats, tmp_path):
    editor = _editor(tmp_path, "What is the capital of France?")
    chat = chats("--verbose", env={"EDITOR": str(editor), "VISUAL": ""})
    chat.type("a draft the editor replaces")
    chat.child.sendcontrol("x")
    chat.child.sendcontrol("e")
    # The prompt is drawn again when the editor returns, then the message is sent.
    chat.child.expect_exact("tokens/s")  # --verbose's line after the reply
    chat.wait_for_prompt()
    assert [(user, bool(reply)) for user, reply in chat.history()] == [("What is the capital of France?", True)]

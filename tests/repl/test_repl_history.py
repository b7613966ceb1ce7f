"""Issue 9, persistent input history: recalled across processes (Up, Ctrl-R, suggestions),
a private file (0600 in 0700), lines starting with a space left out, bounded in size,
and off with --no-history or FALCONCHAT_NO_HISTORY."""

from __future__ import annotations

import os

import pytest
from repl_helpers import ENTER, PASTE_END, PASTE_START, UP, files_under, history_file, mode

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

CTRL_R = "\x12"
RIGHT = "\x1b[C"


def test_up_arrow_recalls_a_message_from_a_previous_process(chats, tmp_path):
    first = chats()
    first.say("What is the capital of France?")
    assert first.ctrl_d()[0] == 0

    second = chats()
    second.keys(UP, ENTER)
    assert [(user, bool(reply)) for user, reply in second.history()] == [("What is the capital of France?", True)]


def test_a_multi_line_message_is_recalled_whole(chats):
    first = chats()
    first.type(PASTE_START + "recalled line one\nrecalled line two" + PASTE_END)
    first.keys(ENTER)
    first.ctrl_d()

    second = chats()
    second.keys(UP, ENTER)
    assert [user for user, _ in second.history()] == ["recalled line one\nrecalled line two"]


def test_up_arrow_goes_back_through_older_entries(chats):
    first = chats()
    first.say("/set top_k 7")
    first.say("/set top_k 9")
    first.ctrl_d()

    second = chats()
    assert "top_k = 7" in second.keys(UP, UP, ENTER)


def test_the_history_file_is_private(chats, tmp_path):
    chat = chats()
    chat.say("/show")
    chat.ctrl_d()
    path = history_file(tmp_path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert "/show" in path.read_text()


def test_an_existing_history_file_and_directory_are_made_private(chats, tmp_path):
    path = history_file(tmp_path)
    path.parent.mkdir(parents=True)
    os.chmod(path.parent, 0o755)
    path.write_text("\n# earlier\n+/show\n")
    os.chmod(path, 0o644)
    chat = chats()
    chat.ctrl_d()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_a_line_starting_with_a_space_is_sent_but_not_recorded(chats, tmp_path):
    chat = chats()
    chat.say(" What is the capital of France?")
    assert [(user, bool(reply)) for user, reply in chat.history()] == [("What is the capital of France?", True)]  # sent
    chat.say("/set top_k 11")  # and the next line is recorded as usual
    chat.ctrl_d()
    text = history_file(tmp_path).read_text()
    assert "capital of France" not in text
    assert "/set top_k 11" in text


def test_ctrl_r_searches_the_history_of_a_previous_process(chats):
    first = chats()
    first.say("What is the capital of France?")
    first.say("/show")
    first.ctrl_d()

    second = chats()
    second.type(CTRL_R, "France", ENTER)  # Enter accepts the match into the message being written
    second.type(ENTER)  # and Enter sends it
    second.wait_for_prompt()  # the prompt after the reply
    assert [(user, bool(reply)) for user, reply in second.history()] == [("What is the capital of France?", True)]


def test_a_suggestion_from_history_is_accepted_with_the_right_arrow(chats):
    first = chats()
    first.say("What is the capital of France?")
    first.ctrl_d()

    second = chats()
    second.type("What is the cap", RIGHT)
    second.keys(ENTER)
    assert [(user, bool(reply)) for user, reply in second.history()] == [("What is the capital of France?", True)]


def test_the_history_file_is_bounded(chats, tmp_path):
    path = history_file(tmp_path)
    path.parent.mkdir(parents=True, mode=0o700)
    entries = [f"old message number {i} " + "x" * 200 for i in range(6000)]  # ~1.3 MB
    path.write_text("".join(f"\n# 2024-01-01 00:00:00\n+{entry}\n" for entry in entries))
    os.chmod(path, 0o600)
    assert path.stat().st_size > 1024 * 1024

    chat = chats()
    assert "input history: on" in chat.say("/show")
    chat.ctrl_d()
    assert path.stat().st_size < 1024 * 1024
    assert mode(path) == 0o600
    text = path.read_text()
    assert entries[-1] in text  # the newest are kept
    assert entries[0] not in text  # the oldest are dropped
    assert "/show" in text


def test_the_newest_entry_of_a_compacted_history_is_recalled(chats, tmp_path):
    path = history_file(tmp_path)
    path.parent.mkdir(parents=True, mode=0o700)
    entries = [f"/set top_k {i % 97}" + " " * 300 for i in range(4000)]
    entries[-1] = "/set top_k 42"
    path.write_text("".join(f"\n# 2024-01-01 00:00:00\n+{entry}\n" for entry in entries))
    assert path.stat().st_size > 1024 * 1024
    chat = chats()
    assert "top_k = 42" in chat.keys(UP, ENTER)


def test_no_history_flag_writes_and_reads_no_history_file(chats, tmp_path):
    chat = chats("chat", "--no-history")
    chat.say("/set top_k 5")
    assert "input history: off" in chat.say("/show")
    chat.ctrl_d()
    assert files_under(tmp_path / "data") == []

    # An existing history is not read either.
    recorded = chats()
    recorded.say("/set top_k 13")
    recorded.ctrl_d()
    before = history_file(tmp_path).read_text()
    chat = chats("chat", "--no-history")
    shown = chat.keys(UP, ENTER)  # nothing to recall: an empty line
    assert "top_k = 13" not in shown
    chat.say("/set top_k 6")
    chat.ctrl_d()
    assert history_file(tmp_path).read_text() == before


def test_falconchat_no_history_environment_variable(chats, tmp_path):
    chat = chats(env={"FALCONCHAT_NO_HISTORY": "1"})
    chat.say("/set top_k 5")
    assert "input history: off" in chat.say("/show")
    chat.ctrl_d()
    assert files_under(tmp_path / "data") == []

"""Issue 9, sessions in a real pseudo-terminal: /save and /load across processes, private
files without secrets, /export, `chat --session` kept current (SIGHUP, SIGTERM) and
`--resume`, nothing on disk without a session, corrupt files refused."""

from __future__ import annotations

import json
import os
import signal

import pytest
from repl_helpers import ENTER, TAB, files_under, isolated_env, mode, sessions_dir

from processes import expect_reply_start, falconchat, one_error_line

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

FRANCE = "What is the capital of France?"
ITALY = "What is the capital of Italy?"
SECRETS = {"HF_API_KEY": "hf_test_secret_hf_api_key_123", "FALCONCHAT_API_KEY": "fc_test_secret_key_456"}


def test_save_then_load_in_a_new_process_restores_the_conversation(chats, tmp_path):
    chat = chats(env=SECRETS)
    chat.say("/system You are terse.")
    chat.say(FRANCE)
    chat.say(ITALY)
    chat.say("/set top_k 7")
    saved = chat.history()
    assert "saved to" in chat.say("/save travel-notes")
    assert chat.ctrl_d()[0] == 0

    path = sessions_dir(tmp_path) / "travel-notes.json"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    text = path.read_text()
    for secret in SECRETS.values():
        assert secret not in text
    assert "api_key" not in text

    again = chats()
    assert again.history() == []
    shown = again.keys("/load trav", TAB, ENTER)  # Tab completes session names
    assert "loaded travel-notes: 2 exchanges" in shown
    assert again.history() == saved
    assert "You are terse." in again.say("/system")
    assert "top_k = 7" in again.say("/show")
    again.say("What is the capital of Spain?")  # the conversation goes on from there
    assert again.history()[:2] == saved
    assert len(again.history()) == 3


def test_save_without_a_name_outside_a_session_asks_for_one(chats, tmp_path):
    chat = chats()
    chat.say(FRANCE)
    assert "usage: /save [NAME]" in chat.say("/save")
    assert "bad session name" in chat.say("/save no spaces allowed")
    chat.ctrl_d()
    assert not sessions_dir(tmp_path).exists()


def test_export_writes_markdown_with_the_exchange(chats, tmp_path):
    chat = chats()
    chat.say("/system Be brief.")
    chat.say(FRANCE)
    ((_user, reply),) = chat.history()
    assert "exported to" in chat.say("/export chat.md")
    path = tmp_path / "chat.md"
    text = path.read_text()
    assert text.startswith("# Conversation with smollm2")
    assert "**System:** Be brief." in text
    assert f"## You\n\n{FRANCE}\n" in text
    assert "## smollm2" in text
    assert reply.split("\n")[0] in text
    assert mode(path) == 0o600


def _session(home, name):
    return json.loads((sessions_dir(home) / f"{name}.json").read_text())


def test_a_named_session_is_kept_after_every_exchange_and_survives_sighup(chats, tmp_path):
    chat = chats("chat", "--session", "trip", env=SECRETS)
    assert "session trip" in chat.banner
    chat.say(FRANCE)
    # Kept current while the chat is still open: closing the terminal loses nothing.
    kept = _session(tmp_path, "trip")
    assert [t["user"] for t in kept["turns"]] == [FRANCE]
    assert mode(sessions_dir(tmp_path) / "trip.json") == 0o600
    assert mode(sessions_dir(tmp_path)) == 0o700
    chat.say(ITALY)
    assert [t["user"] for t in _session(tmp_path, "trip")["turns"]] == [FRANCE, ITALY]
    before = chat.history()

    chat.child.kill(signal.SIGHUP)
    status, _ = chat.wait_exit()
    assert not chat.child.isalive()
    assert status == 128 + signal.SIGHUP
    text = (sessions_dir(tmp_path) / "trip.json").read_text()
    assert not any(secret in text for secret in SECRETS.values())

    resumed = chats("chat", "--resume")
    assert "session trip" in resumed.banner
    assert resumed.history() == before
    assert "session: trip" in resumed.say("/show")


def test_sighup_during_a_reply_keeps_what_was_shown(chats, tmp_path):
    chat = chats("--max-new-tokens", "400", "chat", "--session", "mid")
    chat.type("Count from one to one hundred in words, one per line.", ENTER)
    chat.child.expect_exact("\x1b[?2004l")  # the prompt has closed
    expect_reply_start(chat.child)  # and the reply has started
    chat.child.kill(signal.SIGHUP)
    status, _ = chat.wait_exit()
    assert status == 128 + signal.SIGHUP
    (turn,) = _session(tmp_path, "mid")["turns"]
    assert turn["user"] == "Count from one to one hundred in words, one per line."
    assert turn["assistant"].strip()  # the part that was shown

    resumed = chats("chat", "--resume")
    (kept,) = resumed.history()
    assert kept[0] == turn["user"]


def test_sigterm_keeps_changes_made_since_the_last_exchange(chats, tmp_path):
    chat = chats("chat", "--session", "work")
    chat.say(FRANCE)
    chat.say("/system You speak like a sailor.")
    chat.child.kill(signal.SIGTERM)
    status, _ = chat.wait_exit()
    assert status == 128 + signal.SIGTERM
    assert _session(tmp_path, "work")["system"] == "You speak like a sailor."

    resumed = chats("chat", "--resume")
    assert [user for user, _ in resumed.history()] == [FRANCE]
    assert "You speak like a sailor." in resumed.say("/system")


def test_resume_opens_the_most_recent_session_and_session_reopens_by_name(chats, tmp_path):
    first = chats("chat", "--session", "older")
    first.say(FRANCE)
    first.ctrl_d()
    second = chats("chat", "--session", "newer")
    second.say(ITALY)
    second.ctrl_d()
    os.utime(sessions_dir(tmp_path) / "older.json", (1, 1))

    resumed = chats("chat", "--resume")
    assert [user for user, _ in resumed.history()] == [ITALY]
    resumed.ctrl_d()
    reopened = chats("chat", "--session", "older")
    assert [user for user, _ in reopened.history()] == [FRANCE]


def test_resume_with_no_saved_session_is_a_usage_error(tmp_path):
    result = falconchat("chat", "--resume", cwd=tmp_path, env=isolated_env(tmp_path))
    assert result.returncode == 2
    assert "no saved session" in one_error_line(result.stderr)


def test_a_chat_without_a_session_or_the_log_writes_no_conversation_to_disk(chats, tmp_path):
    chat = chats("chat", "--no-log")
    chat.say(FRANCE)
    reply = chat.history()[0][1]
    chat.say(ITALY)
    chat.ctrl_d()
    assert not sessions_dir(tmp_path).exists()
    written = files_under(tmp_path)
    assert [p.name for p in written] == ["history"]  # only what was typed, for Up
    assert reply.split("\n")[0] not in written[0].read_text()

    quiet = chats("chat", "--no-history", "--no-log")
    quiet.say(FRANCE)
    quiet.ctrl_d()
    assert files_under(tmp_path) == written

    logged = chats("chat", "--no-history")  # the log (on by default) keeps every exchange, privately
    logged.say(FRANCE)
    logged.ctrl_d()
    assert [p.name for p in files_under(tmp_path) if p not in written] == ["log.db"]
    assert (tmp_path / "data" / "falconchat" / "log.db").stat().st_mode & 0o077 == 0


def _corrupt(home, name, content: bytes):
    directory = sessions_dir(home)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}.json"
    path.write_bytes(content)
    return path


CORRUPT = {
    "garbage": b"this is not json {",
    "foreign": json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
    "future": json.dumps(
        {"format": "falconchat-session", "version": 99, "system": "", "model": "x", "turns": []}
    ).encode(),
    "badturns": json.dumps(
        {
            "format": "falconchat-session",
            "version": 1,
            "system": "",
            "model": "x",
            "turns": [{"user": 1, "assistant": "a", "status": "complete"}],
        }
    ).encode(),
    "badparams": json.dumps(
        {
            "format": "falconchat-session",
            "version": 1,
            "system": "",
            "model": "x",
            "turns": [],
            "params": {"temperature": "hot"},
        }
    ).encode(),
    "binary": b"\xff\xfe\x00garbage",
    "empty": b"",
    "array": b"[1, 2, 3]",
}
DEEP = b"[" * 100_000  # nested past Python's recursion limit


@pytest.mark.parametrize("name", [*CORRUPT, "deep"])
def test_a_corrupt_session_file_is_refused_at_the_command_line(tmp_path, name):
    content = CORRUPT.get(name, DEEP)
    path = _corrupt(tmp_path, name, content)
    stamp = path.stat().st_mtime_ns
    result = falconchat("chat", "--session", name, cwd=tmp_path, env=isolated_env(tmp_path), timeout=60)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert "session" in line, line
    assert path.read_bytes() == content  # not overwritten
    assert path.stat().st_mtime_ns == stamp
    assert result.stdout == b""


def test_a_corrupt_session_file_is_refused_by_load_and_nothing_changes(chats, tmp_path):
    for name, content in CORRUPT.items():
        _corrupt(tmp_path, name, content)
    chat = chats()
    chat.say(FRANCE)
    chat.say("/set top_k 9")
    before = chat.history()
    for name in CORRUPT:
        shown = chat.say(f"/load {name}")
        assert "error:" in shown, (name, shown)
        assert "loaded" not in shown
        assert chat.child.isalive(), name
    assert chat.history() == before
    assert "top_k = 9" in chat.say("/show")
    assert "no session file" in chat.say("/load missing")
    assert chat.reply_to(ITALY)  # the chat goes on
    chat.ctrl_d()
    for name, content in CORRUPT.items():
        assert (sessions_dir(tmp_path) / f"{name}.json").read_bytes() == content


def test_load_inside_a_named_session_refuses_a_corrupt_file_and_keeps_the_session(chats, tmp_path):
    _corrupt(tmp_path, "garbage", CORRUPT["garbage"])
    chat = chats("chat", "--session", "mine")
    chat.say(FRANCE)
    assert "error:" in chat.say("/load garbage")
    chat.ctrl_d()
    assert [t["user"] for t in _session(tmp_path, "mine")["turns"]] == [FRANCE]
    assert (sessions_dir(tmp_path) / "garbage.json").read_bytes() == CORRUPT["garbage"]


def test_load_of_a_deeply_nested_json_file_is_refused_and_the_chat_goes_on(chats, tmp_path):
    _corrupt(tmp_path, "deep", DEEP)
    chat = chats()
    chat.say(FRANCE)
    before = chat.history()
    assert "error:" in chat.say("/load deep")
    assert chat.history() == before


def test_a_byte_that_is_not_utf8_does_not_end_a_named_session(chats, tmp_path):
    """A Latin-1 terminal or a binary paste: the message is kept (with a replacement
    character), the session is written, /export works, and the chat goes on."""
    chat = chats("chat", "--session", "latin")
    os.write(chat.child.child_fd, b"What is the capital of Fr\xe9nce?")
    chat.keys(ENTER)
    assert chat.child.isalive()
    assert "exported to" in chat.say("/export latin.md")
    assert chat.reply_to(ITALY)
    status, _ = chat.ctrl_d()
    assert status == 0
    turns = _session(tmp_path, "latin")["turns"]
    assert [t["user"] for t in turns][1] == ITALY
    assert turns[0]["user"].startswith("What is the capital of Fr")

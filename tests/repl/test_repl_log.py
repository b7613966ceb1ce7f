"""The chat in the conversation log, as a person uses it in a terminal (tmux) and as a script
pipes it: `chat -c` opens the last conversation with its numbered turns, `/fork N` goes on in a
new one, Ctrl-C logs what arrived as cancelled; against a scripted endpoint over real HTTP."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from processes import FALCONCHAT, falconchat, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat in tmux, and endpoints


def _db(home):
    db = sqlite3.connect(home / "data" / "falconchat" / "log.db")
    db.row_factory = sqlite3.Row
    return db


def test_chat_c_continues_the_last_conversation_and_fork_goes_on_in_a_new_one(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.echo()
    env = isolated_env(tmp_path)
    for prompt, extra in (("first question", ()), ("second question", ("-c",))):
        assert falconchat("ask", *extra, "--endpoint", tgi_endpoint.url, prompt, cwd=tmp_path, env=env).returncode == 0
    term = terminals("chat", "-c", "--endpoint", tgi_endpoint.url)
    opened = term.wait_prompt()
    # the conversation is shown as /history shows it, its exchanges numbered for /fork
    assert "1. You: first question" in opened and "2. You: second question" in opened
    assert "echo: second question" in opened
    term.say("third question")
    term.wait_for("echo: third question")
    assert tgi_endpoint.requests[-1].body["inputs"].count("User: ") == 3  # the earlier turns went too
    term.wait_prompt()
    term.say("/fork 1")
    term.wait_for("opens that one again)", whole=True)
    said = term.scrollback(joined=True)  # the notice, its wrapped lines joined
    term.say("another second")
    term.wait_for("echo: another second")
    sent = tgi_endpoint.requests[-1].body["inputs"]
    assert "first question" in sent and "second question" not in sent and "third question" not in sent
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0

    with _db(tmp_path) as db:
        conversations = db.execute("SELECT id, parent_id, parent_turn FROM conversations ORDER BY id").fetchall()
        assert len(conversations) == 2
        original, fork = conversations
        assert (fork["parent_id"], fork["parent_turn"]) == (original["id"], 1)
        assert f"forked: conversation {fork['id']} goes on from the first 1 exchange of {original['id']}" in said
        prompts = [
            r[0]
            for r in db.execute(
                "SELECT prompt FROM exchanges WHERE conversation_id = ? ORDER BY turn", (original["id"],)
            )
        ]
        assert prompts == ["first question", "second question", "third question"]  # nothing logged is changed
        forked = db.execute("SELECT prompt, turn FROM exchanges WHERE conversation_id = ?", (fork["id"],)).fetchall()
        assert [tuple(r) for r in forked] == [("another second", 2)]  # it shares turn 1, not a copy
    # falconchat logs --cid shows the fork whole: the shared turn, then its own
    shown = falconchat("logs", "--cid", fork["id"], "--json", cwd=tmp_path, env=env)
    assert [e["prompt"] for e in json.loads(shown.stdout)] == ["first question", "another second"]


def test_a_reply_stopped_with_ctrl_c_is_logged_as_cancelled_with_what_arrived(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.forever()
    term = terminals("chat", "--endpoint", tgi_endpoint.url)
    term.wait_prompt()
    term.say("talk forever")
    term.wait_for(lambda s: s.count("word") >= 3)
    term.keys("C-c")
    term.wait_for("reply stopped")
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0
    with _db(tmp_path) as db:
        row = db.execute("SELECT prompt, reply, finish_reason FROM exchanges").fetchone()
    assert row["prompt"] == "talk forever" and row["finish_reason"] == "cancelled"
    assert row["reply"].count("word") >= 3


def test_the_piped_chat_is_logged(tgi_endpoint, tmp_path):
    tgi_endpoint.echo()
    env = isolated_env(tmp_path)
    script = b"one\ntwo\n/fork 1\nthree\n"
    done = subprocess.run(
        [*FALCONCHAT, "chat", "--endpoint", tgi_endpoint.url],
        input=script,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with _db(tmp_path) as db:
        rows = db.execute("SELECT prompt, reply, command, turn FROM exchanges ORDER BY id").fetchall()
    assert [(r["prompt"], r["reply"], r["command"], r["turn"]) for r in rows] == [
        ("one", "echo: one", "chat", 1),
        ("two", "echo: two", "chat", 2),
        ("three", "echo: three", "chat", 2),
    ]


def _piped_chat(home, url, *args, script: bytes):
    return subprocess.run(
        [*FALCONCHAT, "chat", "--endpoint", url, *args],
        input=script,
        env=isolated_env(home),
        cwd=home,
        capture_output=True,
        timeout=60,
    )


def test_a_named_session_is_a_logged_conversation_and_an_old_session_file_joins_the_log(tgi_endpoint, tmp_path):
    tgi_endpoint.echo()
    # a session file from before the log: its turns are the context, and join the log
    sessions = tmp_path / "data" / "falconchat" / "sessions"
    sessions.mkdir(parents=True)
    old = {
        "format": "falconchat-session",
        "version": 1,
        "saved_at": "2026-01-01T00:00:00Z",
        "model": "old-model",
        "system": "",
        "params": {},
        "turns": [{"user": "my name is Zed", "assistant": "Hello Zed", "status": "complete"}],
    }
    (sessions / "notes.json").write_text(json.dumps(old))
    assert _piped_chat(tmp_path, tgi_endpoint.url, "--session", "notes", script=b"what is my name?\n").returncode == 0
    assert "User: my name is Zed" in tgi_endpoint.requests[-1].body["inputs"]
    (sessions / "notes.json").unlink()  # the log holds the conversation by its name now
    assert _piped_chat(tmp_path, tgi_endpoint.url, "--session", "notes", script=b"and again?\n").returncode == 0
    sent = tgi_endpoint.requests[-1].body["inputs"]
    assert "User: my name is Zed" in sent and "User: what is my name?" in sent
    with _db(tmp_path) as db:
        (cid,) = db.execute("SELECT id FROM conversations WHERE name = 'notes'").fetchone()
        prompts = [
            r[0] for r in db.execute("SELECT prompt FROM exchanges WHERE conversation_id = ? ORDER BY turn", (cid,))
        ]
    assert prompts == ["my name is Zed", "what is my name?", "and again?"]
    assert (sessions / "notes.json").exists()  # and the file is written again: /load and /save go on working

"""The chat with its input piped (a script driving it): each line is a message or a command,
each reply goes to stdout as plain text, a named session is kept; the chat's own flags work
before the command too (`falconchat` alone is the chat)."""

from __future__ import annotations

import json

import pytest
from repl_helpers import sessions_dir

from processes import falconchat, isolated_env

pytestmark = pytest.mark.process  # the real falconchat, with its input a pipe


def session_turns(home, name: str) -> list[dict]:
    return json.loads((sessions_dir(home) / f"{name}.json").read_text())["turns"]


def test_each_piped_line_is_a_message_and_the_session_is_kept(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Noted", "."], "eos_token")
    env = isolated_env(tmp_path)
    done = falconchat(
        "chat", "--session", "notes", "--endpoint", tgi_endpoint.url,
        cwd=tmp_path, env=env, input=b"first thing\n/temp 0.3\nsecond thing\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "Noted.\nNoted.\n"  # the replies, plain: no prompt, toolbar or escapes
    assert "temperature = 0.3" in done.stderr.decode() and "Traceback" not in done.stderr.decode()
    assert [t["user"] for t in session_turns(tmp_path, "notes")] == ["first thing", "second thing"]

    # The chat's flags before the command (or with no command at all) are the chat's too.
    done = falconchat(
        "--session", "notes", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=b"third thing\n"
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "Noted.\n"
    assert [t["user"] for t in session_turns(tmp_path, "notes")] == ["first thing", "second thing", "third thing"]
    sent = tgi_endpoint.requests[-1].body["inputs"]  # the session's turns went as context
    assert "first thing" in sent and "second thing" in sent


def test_a_piped_chat_without_a_session_answers_and_ends(tgi_endpoint, tmp_path):
    """It ended with `unexpected error: (25, 'Inappropriate ioctl for device')`, exit 1."""
    tgi_endpoint.stream([" Hi"], "eos_token")
    done = falconchat(
        "chat", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=isolated_env(tmp_path), input=b"hello\n"
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "Hi\n"


def test_a_reader_that_goes_away_ends_the_piped_chat_as_a_closed_pipe(tgi_endpoint, tmp_path):
    """`… | head -1`: exit 141 as for any Unix tool (it was 129, "the terminal went away"),
    quietly, and the named session is kept."""
    import subprocess

    from processes import FALCONCHAT

    tgi_endpoint.forever(0.02)  # the reply goes on until the pipe's reader has gone
    command = (
        "printf 'hello\\n' | "
        + " ".join([*FALCONCHAT, "--session", "cut", "--endpoint", tgi_endpoint.url])
        + ' | head -c 20; echo " status=${PIPESTATUS[1]}"'
    )
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=isolated_env(tmp_path), capture_output=True, timeout=60
    )
    assert done.stdout.decode().endswith(" status=141\n"), (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr.decode() and "error" not in done.stderr.decode(), done.stderr
    assert (sessions_dir(tmp_path) / "cut.json").exists()


def test_piped_lines_with_a_chat_command_are_read_as_the_chat_reads_them(tgi_endpoint, tmp_path):
    """Issue 23 item 14: `printf 'hi\\n/exit\\n' | falconchat` sent '/exit' to the model as text."""
    tgi_endpoint.stream([" Noted."], "eos_token")
    env = isolated_env(tmp_path)
    done = falconchat(
        "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=b"hi\n/temp 0.3\nthere\n/exit\nnever sent\n"
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "Noted.\nNoted.\n"  # two messages, each answered
    assert "temperature = 0.3" in done.stderr.decode()
    sent = [request.body["inputs"] for request in tgi_endpoint.requests]
    assert len(sent) == 2 and not any("/exit" in s or "/temp" in s or "never sent" in s for s in sent)
    assert tgi_endpoint.requests[1].body["parameters"]["temperature"] == 0.3

    # Without a command line it stays one message, answered once, as `ask` (a path is no command).
    done = falconchat(
        "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=b"what is in\n/usr/bin\n?\n"
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "Noted.\n"
    assert len(tgi_endpoint.requests) == 3 and "what is in\n/usr/bin\n?" in tgi_endpoint.requests[2].body["inputs"]

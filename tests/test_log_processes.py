"""The conversation log under real processes: `ask` then `ask -c`, eight `ask`s writing at
once, and a process killed in the middle of a reply; a real SQLite file each time."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

import pytest

from processes import FALCONCHAT, falconchat, isolated_env

pytestmark = pytest.mark.process


def _log(home):
    return home / "data" / "falconchat" / "log.db"


def test_ask_then_ask_c_sends_the_conversation_again(tgi_endpoint, tmp_path):
    tgi_endpoint.echo()
    env = isolated_env(tmp_path)
    first = falconchat("ask", "--endpoint", tgi_endpoint.url, "-s", "be brief", "name a colour", cwd=tmp_path, env=env)
    assert first.returncode == 0 and first.stdout == b"echo: name a colour\n" and first.stderr == b""
    second = falconchat("ask", "-c", "--endpoint", tgi_endpoint.url, "and in French?", cwd=tmp_path, env=env)
    assert second.returncode == 0 and second.stderr == b""
    assert tgi_endpoint.requests[-1].body["inputs"] == (
        "System:be brief\nUser: name a colour\nAssistant: echo: name a colour\nUser: and in French?\nAssistant:"
    )
    found = falconchat("logs", "-q", "French", "-r", cwd=tmp_path, env=env)
    assert found.stdout == b"echo: and in French?\n"


def test_eight_asks_at_once_lose_no_exchange(tgi_endpoint, tmp_path):
    tgi_endpoint.echo(latency=0.05, jitter=0.05)
    env = isolated_env(tmp_path)
    # no log yet: the eight race to create it too
    running = [
        subprocess.Popen(
            [*FALCONCHAT, "ask", "--endpoint", tgi_endpoint.url, f"question {n}"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(8)
    ]
    for n, process in enumerate(running):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and out == f"echo: question {n}\n".encode(), err
        assert err == b"", err  # never "database is locked", never a warning
    with sqlite3.connect(_log(tmp_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        prompts = sorted(r[0] for r in db.execute("SELECT prompt FROM exchanges"))
        replies = {r[0] for r in db.execute("SELECT reply FROM exchanges")}
    assert prompts == [f"question {n}" for n in range(8)]
    assert all(f"echo: question {n}" in replies for n in range(8))


def test_a_process_killed_mid_reply_leaves_the_log_whole(tgi_endpoint, tmp_path):
    tgi_endpoint.echo()
    tgi_endpoint.forever()
    env = isolated_env(tmp_path)
    assert falconchat("ask", "--endpoint", tgi_endpoint.url, "before", cwd=tmp_path, env=env).returncode == 0
    process = subprocess.Popen(
        [*FALCONCHAT, "ask", "--endpoint", tgi_endpoint.url, "never ends"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    while seen.count(b"word") < 3 and time.monotonic() < deadline:
        seen += process.stdout.read1(100)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with sqlite3.connect(_log(tmp_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [r[0] for r in db.execute("SELECT prompt FROM exchanges")] == ["before"]  # absent, never half
        assert db.execute("SELECT count(*) FROM exchanges_fts WHERE exchanges_fts MATCH 'before'").fetchone()[0] == 1


def test_batch_logs_only_with_log_and_loses_nothing_beside_other_writers(tgi_endpoint, tmp_path):
    tgi_endpoint.echo(latency=0.02, jitter=0.02)
    env = isolated_env(tmp_path)
    prompts = "".join(f"item {n}\n" for n in range(24)).encode()
    quiet = falconchat("batch", "--endpoint", tgi_endpoint.url, "-j", "8", cwd=tmp_path, env=env, input=prompts)
    assert quiet.returncode == 0 and not _log(tmp_path).exists()  # its output is its record
    asks = [
        subprocess.Popen(
            [*FALCONCHAT, "ask", "--endpoint", tgi_endpoint.url, f"beside {n}"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(2)
    ]
    logged = falconchat(
        "batch", "--log", "--endpoint", tgi_endpoint.url, "-j", "8", cwd=tmp_path, env=env, input=prompts
    )
    assert logged.returncode == 0 and b"warning" not in logged.stderr, logged.stderr
    for process in asks:
        assert process.wait(timeout=120) == 0 and process.stderr.read() == b""
    with sqlite3.connect(_log(tmp_path)) as db:
        rows = db.execute("SELECT command, prompt, reply FROM exchanges").fetchall()
    batch = sorted((prompt, reply) for command, prompt, reply in rows if command == "batch")
    assert batch == sorted((f"item {n}", f"echo: item {n}") for n in range(24))
    assert sorted(prompt for command, prompt, _ in rows if command == "ask") == ["beside 0", "beside 1"]

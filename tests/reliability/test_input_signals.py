"""Input and signals: bad, huge or endless stdin, empty and huge arguments, SIGPIPE,
SIGTERM and SIGHUP mid-reply, Ctrl-C storms in the REPL.

Each ends with a clear message (or none, where Unix tools say nothing), the
documented exit code, no traceback, no generation left running (the endpoint sees
the client leave; `serve`'s engine is idle afterwards) and no conversation lost.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from kit import FALCONCHAT, Terminal, isolated_env, no_leaks, no_traceback, one_error_line, popen, run
from serve_process import CANCELLED, running

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

SIGNALLED = {signal.SIGTERM: (143, -15), signal.SIGHUP: (129, -1)}  # the shell's code, or Python's


def lines_forever(reply) -> None:
    """A reply that streams a line every 20 ms until the client leaves."""
    reply.start_stream()
    n = 0
    while not reply._endpoint._release.is_set():
        n += 1
        reply.token(f" line {n}\n")
        time.sleep(0.02)


def left(endpoint, within: float = 3.0) -> bool:
    """Whether the endpoint saw the client go away (its stream could not be written)."""
    return endpoint.disconnected.wait(within)


# ---- stdin ---------------------------------------------------------------------------------


def test_invalid_utf8_and_nul_bytes_reach_the_model_as_text(home, tgi_endpoint):
    tgi_endpoint.echo()
    result = run(home, "ask", "--endpoint", tgi_endpoint.url, "Summarise:", stdin=b"caf\xe9 \xff\xfe na\x00\x00ive\n")
    assert result.code == 0, result.err
    assert result.err == ""
    sent = tgi_endpoint.requests[0].body["inputs"]
    assert "caf\ufffd \ufffd\ufffd naive" in sent and "\x00" not in sent


def fed(home, data: bytes, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """`falconchat ARGS` with `data` written into a real pipe as fast as it is read (a reader
    that stops early is fine); its exit code, stderr and how long it ran."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "stderr.txt", "wb+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [*FALCONCHAT, *args],
            cwd=home,
            env=isolated_env(home, **(env or {})),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )

        def feed() -> None:
            try:
                for at in range(0, len(data), 1 << 20):
                    proc.stdin.write(data[at : at + (1 << 20)])
                proc.stdin.close()
            except OSError:  # the reader went away
                pass

        threading.Thread(target=feed, daemon=True).start()
        code = proc.wait(timeout=120)
        err.seek(0)
        return code, err.read().decode(), time.monotonic() - started


def test_100_mb_of_stdin_over_the_limit_is_refused_quickly(home, tgi_endpoint):
    code, err, seconds = fed(home, b"x" * (100 << 20), "ask", "--endpoint", tgi_endpoint.url)
    assert code == 2
    one_error_line(err, "stdin is larger than", "FALCONCHAT_MAX_INPUT_BYTES")
    assert seconds < 20
    assert tgi_endpoint.requests == []  # nothing was sent


def test_100_mb_of_stdin_within_a_raised_limit_is_read_and_measured(home, tgi_endpoint):
    """Read whole (with NULs and bad bytes in it), then refused for the model's context, not crashed."""
    data = b"word \x00\xff " * ((100 << 20) // 8)
    code, err, _ = fed(
        home, data, "ask", "--endpoint", tgi_endpoint.url, env={"FALCONCHAT_MAX_INPUT_BYTES": str(200 << 20)}
    )
    assert code == 2, err
    line = one_error_line(err, "tokens", "shorten it")
    assert int(line.split("needs ")[1].split()[0]) > 30_000_000  # all 100 MB were read: ~35 M estimated tokens
    assert tgi_endpoint.requests == []


@pytest.mark.parametrize("args", [("ask", "hi"), ()], ids=["ask", "no command"])
def test_stdin_that_never_closes_waits_and_ctrl_c_ends_it(home, tgi_endpoint, args):
    """A pipe that stays open is still input to come (as for `cat`); Ctrl-C leaves cleanly."""
    tgi_endpoint.echo()
    proc = popen(home, *args, "--endpoint", tgi_endpoint.url, stdin=subprocess.PIPE)
    proc.stdin.write(b"some text\n")
    proc.stdin.flush()
    time.sleep(1.5)
    assert proc.poll() is None and tgi_endpoint.requests == []  # waiting for the rest of stdin
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    no_traceback(err.decode())
    assert out == b""


# ---- arguments -------------------------------------------------------------------------------


def test_an_empty_argument_is_a_usage_error(home):
    result = run(home, "ask", "")
    assert result.code == 2
    one_error_line(result.err, "nothing to ask")


def test_a_huge_argument(home, tgi_endpoint):
    huge = "word " * 25_000  # 125 KB: about the most one argument can be on Linux
    result = run(home, "ask", "--endpoint", tgi_endpoint.url, huge)
    assert result.code == 2
    one_error_line(result.err, "tokens")
    limited = run(home, "ask", "--endpoint", tgi_endpoint.url, huge, env={"FALCONCHAT_MAX_INPUT_BYTES": "1000"})
    assert limited.code == 2
    one_error_line(limited.err, "larger than 1000 bytes")
    assert tgi_endpoint.requests == []


# ---- signals in `ask` -------------------------------------------------------------------------


def test_sigpipe_from_head_ends_quietly_and_stops_the_stream(home, tgi_endpoint):
    tgi_endpoint.script(lines_forever)
    command = (
        " ".join(FALCONCHAT) + f' ask --endpoint {tgi_endpoint.url} hi | head -1; echo "status ${{PIPESTATUS[0]}}" >&2'
    )
    proc = subprocess.run(["bash", "-c", command], cwd=home, env=isolated_env(home), capture_output=True, timeout=30)
    assert proc.stdout == b"line 1\n"
    assert proc.stderr.decode().strip() == "status 141"  # as for any Unix tool; nothing else said
    assert left(tgi_endpoint)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_mid_reply_ends_ask_and_its_stream(home, tgi_endpoint, sig):
    tgi_endpoint.forever()
    proc = popen(home, "ask", "--endpoint", tgi_endpoint.url, "hi")
    assert proc.stdout.read(10)  # the reply is streaming
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode in SIGNALLED[sig], proc.returncode
    no_traceback(err.decode())
    assert left(tgi_endpoint)


# ---- signals in the REPL ------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_mid_reply_in_the_repl_keeps_the_session(home, tgi_endpoint, sig):
    tgi_endpoint.stream([" First", " answer"], "eos_token").forever()
    term = Terminal(home, "chat", "--session", "kept", "--endpoint", tgi_endpoint.url)
    try:
        term.prompt()
        term.say("one")
        term.child.send("two\r")
        term.child.expect_exact("word word")
        term.child.kill(sig)
        assert term.finish(timeout=10) in SIGNALLED[sig]
    finally:
        term.close()
    no_traceback(term.screen)
    assert left(tgi_endpoint)
    saved = json.loads((home / "data" / "falconchat" / "sessions" / "kept.json").read_text())
    assert [t["user"] for t in saved["turns"]] == ["one", "two"]
    assert saved["turns"][0]["assistant"] == "First answer"
    assert saved["turns"][1]["assistant"].startswith("word word") and saved["turns"][1]["status"] == "cut"


def test_a_ctrl_c_storm_in_the_repl(home, tgi_endpoint):
    """Ten Ctrl-C within a second, mid-reply and then at the prompt: the chat survives, the stream
    is closed, the conversation is intact and the next message works."""
    tgi_endpoint.forever().stream([" Still", " here"], "eos_token")
    term = Terminal(home, "--endpoint", tgi_endpoint.url)
    try:
        term.prompt()
        term.child.send("long one\r")
        term.child.expect_exact("word word")
        for _ in range(10):
            term.child.sendcontrol("c")
            time.sleep(0.08)
        term.drain()
        assert left(tgi_endpoint)
        for _ in range(10):  # at the prompt: each clears the line
            term.child.sendcontrol("c")
            time.sleep(0.08)
        term.drain()
        term.child.send("after the storm\r")
        term.child.expect_exact("Still here")
        term.prompt()
        history = term.say("/history")
        term.child.sendcontrol("d")
        assert term.finish() == 0
    finally:
        term.close()
    assert "You: long one" in history and "(cut)" in history and "You: after the storm" in history
    no_traceback(term.screen)
    no_leaks(term.screen)


# ---- the engine behind `serve` is idle afterwards ---------------------------------------------------


@pytest.fixture(scope="module")
def server(serve_home):
    with running(serve_home) as process:
        yield process


def test_sigpipe_and_sigterm_leave_serve_idle(home, server):
    """A client that dies mid-reply stops the generation on the server; the next request is served."""
    mark = server.mark()
    command = (
        " ".join(FALCONCHAT)
        + f" ask -t 0 --max-new-tokens 400 --endpoint {server.url} 'Count to two hundred.' | head -c 20"
    )
    piped = subprocess.run(["bash", "-c", command], cwd=home, env=isolated_env(home), capture_output=True, timeout=60)
    assert len(piped.stdout) == 20 and piped.stderr == b""
    server.wait_for(CANCELLED, since=mark, timeout=20, what="the piped generation to be cancelled")

    mark = server.mark()
    proc = popen(home, "ask", "-t", "0", "--max-new-tokens", "400", "--endpoint", server.url, "Count to two hundred.")
    assert proc.stdout.read(10)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    server.wait_for(CANCELLED, since=mark, timeout=20, what="the terminated generation to be cancelled")

    after = run(home, "ask", "-t", "0", "--max-new-tokens", "8", "--endpoint", server.url, "Say hello.")
    assert after.code == 0 and after.out.strip(), after.err

"""falconchat's own `tgi` backend end to end against `falconchat serve`: `ask`, the REPL, Ctrl-C."""

from __future__ import annotations

import re

import pytest
from serve_process import CANCELLED, parse_request_line

from processes import FALCONCHAT, falconchat, isolated_env, one_error_line

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

pexpect = pytest.importorskip("pexpect")

QUESTION = "What is the capital of France?"
# 40 tokens keep each test short on a slow machine; which words come back is the model's choice.
SHORT = ("-t", "0", "--max-new-tokens", "40")
KEY = "hf_e2e_serve_key_93a1"
PROMPT = ">>>"
PROMPT_STARTS = "\x1b[?2004h"  # prompt-toolkit turns bracketed paste on as each prompt opens
PROMPT_CLOSED = "\x1b[?2004l"  # and off when the line is accepted
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")
INCOMPLETE_ESCAPE = re.compile(r"\x1b(\[[0-?]*[ -/]*|\][^\x07]*)?$")  # a control sequence only partly read yet


def answered(shown: str, question: str) -> bool:
    """A reply was drawn after the echoed question (its words are the model's choice)."""
    return any(ch.isalnum() for ch in shown.replace(question, "", 1))


def ask(tmp_path, *args: str, **env: str):
    return falconchat("ask", *args, cwd=tmp_path, env=isolated_env(tmp_path, **env), timeout=180)


def last_request(server, since: int) -> tuple:
    """The server's record of the generation request the backend made (it POSTs to `/`)."""
    return parse_request_line(server.request_line("/", since=since).string)


# ---- ask ---------------------------------------------------------------------------------------


def test_ask_with_endpoint(server, tmp_path):
    mark = server.mark()
    result = ask(tmp_path, "--endpoint", server.url, *SHORT, QUESTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip()
    assert result.stderr == b""
    method, _, status, tokens, outcome = last_request(server, mark)
    assert (method, status, outcome) == ("POST", 200, "") and 0 < tokens <= 40


def test_ask_with_the_tutorial_environment_variable(server, tmp_path):
    result = ask(tmp_path, *SHORT, QUESTION, HF_API_FALCOM_BASE=server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip()


def test_ask_with_the_right_and_a_wrong_key(start_server, tmp_path):
    server = start_server("--api-key", KEY)
    right = ask(tmp_path, "--endpoint", server.url, *SHORT, QUESTION, HF_API_KEY=KEY)
    assert right.returncode == 0, right.stderr
    assert right.stdout.decode().strip()

    wrong = ask(tmp_path, "--endpoint", server.url, *SHORT, QUESTION, HF_API_KEY="hf_not_the_key")
    assert wrong.returncode == 4, wrong.stderr
    assert wrong.stdout == b""
    line = one_error_line(wrong.stderr)
    assert "hf_not_the_key" not in line

    missing = ask(tmp_path, "--endpoint", server.url, *SHORT, QUESTION)
    assert missing.returncode == 4, missing.stderr
    one_error_line(missing.stderr)
    assert KEY not in server.stop()


def test_ask_with_a_request_the_server_refuses(server, tmp_path):
    # Three stop sequences of the user's and the prompt format's two: more than the server's four.
    stops = ("--stop", "A", "--stop", "B", "--stop", "C")
    result = ask(tmp_path, "--endpoint", server.url, *SHORT, *stops, QUESTION)
    assert result.returncode == 5, result.stderr
    assert "stop" in one_error_line(result.stderr)


# ---- the REPL ----------------------------------------------------------------------------------


def plain(data: str) -> str:
    return ANSI.sub("", data)


def wait_for_prompt(child) -> str:
    child.expect_exact(PROMPT_STARTS)
    shown = child.before
    child.expect_exact(PROMPT)
    return plain(shown)


# The line drawn while the first token is awaited (`⠋ waiting for the model 1s · Ctrl-C stops ·
# endpoint …`): it starts with a spinner's braille character and is redrawn after a carriage
# return, so up to the next one it is not the reply.
WAITING_LINE = re.compile(r"[\u2800-\u28ff][^\r\n]*")


def wait_for_reply_text(child) -> str:
    """Read until some of the reply (not terminal control sequences, nor the waiting line) has
    been shown; return it."""
    shown = ""
    while not re.search(r"[0-9A-Za-z]", WAITING_LINE.sub("", plain(INCOMPLETE_ESCAPE.sub("", shown)))):
        shown += child.read_nonblocking(4096, timeout=child.timeout)
    return plain(shown)


def say(child, text: str) -> str:
    """Send a line; return what was shown until the next prompt, without styling."""
    child.sendline(text)
    return wait_for_prompt(child)


@pytest.fixture
def repl(server, tmp_path):
    env = isolated_env(tmp_path, PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(
        FALCONCHAT[0],
        [*FALCONCHAT[1:], "--endpoint", server.url, *SHORT],
        cwd=str(tmp_path),
        env=env,
        timeout=120,
        encoding="utf-8",
        dimensions=(24, 100),
    )
    wait_for_prompt(child)
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_a_repl_conversation(repl, server):
    mark = server.mark()
    assert answered(say(repl, QUESTION), QUESTION)
    assert answered(say(repl, "What is the capital of Italy?"), "What is the capital of Italy?")
    repl.sendcontrol("d")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0
    requests = [parse_request_line(line) for line in server.lines[mark:] if line.startswith("POST / ")]
    assert [(status, outcome) for _, _, status, _, outcome in requests] == [(200, ""), (200, "")]


def test_ctrl_c_mid_reply_stops_the_generation_on_the_server(repl, server):
    say(repl, "/set max_new_tokens 400")
    mark = server.mark()
    repl.sendline("Count from one to one hundred in words, one per line.")
    repl.expect_exact(PROMPT_CLOSED)  # the line is accepted
    wait_for_reply_text(repl)  # and the reply has started
    repl.sendcontrol("c")
    assert "reply stopped" in wait_for_prompt(repl)
    cancelled = server.wait_for(CANCELLED, since=mark, timeout=5, what="the server to stop generating")
    assert int(cancelled.group(2)) <= 2, cancelled.string
    assert last_request(server, mark)[4] == "cancelled"
    # The REPL and the server both go on.
    say(repl, "/set max_new_tokens 40")
    say(repl, "/clear")
    assert answered(say(repl, QUESTION), QUESTION)

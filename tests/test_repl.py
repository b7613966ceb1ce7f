"""The REPL in a real pseudo-terminal (pexpect), on the bundled model."""

from __future__ import annotations

import re

import pytest

from processes import FALCONCHAT, expect_reply_start, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

pexpect = pytest.importorskip("pexpect")

PROMPT = ">>>"
PROMPT_STARTS = "\x1b[?2004h"  # prompt-toolkit turns bracketed paste on as each prompt opens
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")


def plain(data: str) -> str:
    return ANSI.sub("", data)


@pytest.fixture
def repl(tmp_path):
    env = isolated_env(tmp_path, PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(
        FALCONCHAT[0],
        [*FALCONCHAT[1:], "-t", "0", "--max-new-tokens", "40"],
        cwd=str(tmp_path),
        env=env,
        timeout=60,
        encoding="utf-8",
        dimensions=(24, 100),
    )
    child.expect_exact("smollm2 (bundled, local)")
    wait_for_prompt(child)
    yield child
    if child.isalive():
        child.terminate(force=True)


def wait_for_prompt(child) -> str:
    child.expect_exact(PROMPT_STARTS)
    shown = child.before
    child.expect_exact(PROMPT)
    return plain(shown)


def answered(shown: str, question: str) -> bool:
    """A reply was drawn after the echoed question (which words a tiny model picks is not a contract)."""
    return any(ch.isalnum() for ch in shown.replace(question, "", 1))


def say(child, text: str) -> str:
    """Send a line; return what was shown until the next prompt, without styling."""
    child.sendline(text)
    return wait_for_prompt(child)


def test_a_conversation_then_ctrl_d(repl):
    assert answered(say(repl, "What is the capital of France?"), "What is the capital of France?")
    assert answered(say(repl, "What is the capital of Italy?"), "What is the capital of Italy?")
    repl.sendcontrol("d")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0


def test_slash_commands(repl):
    assert "system message set" in say(repl, "/system You answer in French.")
    assert "You answer in French." in say(repl, "/system")
    assert "temperature = 0.5" in say(repl, "/temp 0.5")
    assert "invalid temperature" in say(repl, "/temp hot")
    assert "top_k = 5" in say(repl, "/set top_k 5")
    assert "usage: /set" in say(repl, "/set colour blue")
    assert "conversation cleared" in say(repl, "/clear")
    assert "unknown command" in say(repl, "/nonsense")
    assert "temperature = 0" in say(repl, "/temp 0")
    assert answered(say(repl, "What is the capital of France?"), "What is the capital of France?")
    repl.sendline("/exit")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0


def test_help_lists_the_commands(repl):
    shown = say(repl, "/help")
    for command in ("/system", "/temp", "/set", "/clear", "/exit"):
        assert command in shown


def test_ctrl_c_stops_a_reply_and_the_next_message_works(repl):
    say(repl, "/set max_new_tokens 400")
    repl.sendline("Count from one to one hundred in words, one per line.")
    repl.expect_exact("\x1b[?2004l")  # the prompt has closed: the terminal is back in cooked mode
    expect_reply_start(repl)
    repl.sendcontrol("c")
    assert "reply stopped" in wait_for_prompt(repl)
    # The cut reply stays in the conversation; the next message is answered after it.
    say(repl, "/set max_new_tokens 40")
    say(repl, "Thank you.")
    assert repl.isalive()
    say(repl, "/clear")
    assert answered(say(repl, "What is the capital of France?"), "What is the capital of France?")


def test_ctrl_c_at_the_prompt_clears_the_line(repl):
    repl.send("half a thought")
    repl.sendcontrol("c")
    wait_for_prompt(repl)
    assert answered(say(repl, "What is the capital of France?"), "What is the capital of France?")


def test_ctrl_d_on_an_empty_session(repl):
    repl.sendcontrol("d")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0

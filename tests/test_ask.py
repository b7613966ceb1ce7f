"""`falconchat ask` as a real process on the bundled model: arguments, stdin, pipes, signals, exit codes."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from processes import FALCONCHAT, falconchat, isolated_env, one_error_line

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

SHORT = ["-t", "0", "--max-new-tokens", "24"]


@pytest.fixture
def env(tmp_path):
    return isolated_env(tmp_path)


def test_answers_an_argument(tmp_path, env):
    result = falconchat("ask", *SHORT, "What is the capital of France?", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert out.strip() and out.endswith("\n")
    assert b"\x1b" not in result.stdout
    assert result.stderr == b""


def test_answers_piped_stdin_and_both(tmp_path, env):
    """Greedy, the same question gives the same reply however it arrives: proof stdin was the question."""
    argument = falconchat("ask", *SHORT, "What is the capital of France?", cwd=tmp_path, env=env)
    assert argument.returncode == 0 and argument.stdout.strip()
    alone = falconchat("ask", *SHORT, cwd=tmp_path, env=env, input=b"What is the capital of France?")
    assert alone.returncode == 0 and alone.stdout == argument.stdout
    line = falconchat("ask", *SHORT, cwd=tmp_path, env=env, input=b"What is the capital of France?\n")
    assert line.returncode == 0 and line.stdout.strip()  # (the newline is part of the prompt: another reply)
    both = falconchat("ask", *SHORT, "Summarise:", cwd=tmp_path, env=env, input=b"Paris is the capital of France.\n")
    assert both.returncode == 0 and both.stdout.strip()
    dash = falconchat("ask", *SHORT, "-", cwd=tmp_path, env=env, input=b"What is the capital of France?")
    assert dash.returncode == 0 and dash.stdout == argument.stdout


def test_no_command_with_piped_stdin_answers_once(tmp_path, env):
    result = falconchat(*SHORT, cwd=tmp_path, env=env, input=b"What is the capital of France?")
    asked = falconchat("ask", *SHORT, "What is the capital of France?", cwd=tmp_path, env=env)
    assert result.returncode == 0 and result.stdout.strip() and result.stdout == asked.stdout


def test_invalid_utf8_and_nul_bytes_in_stdin_are_not_fatal(tmp_path, env):
    result = falconchat("ask", *SHORT, cwd=tmp_path, env=env, input=b"Hello \xff\xfe world\x00!\n")
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr


def test_stdin_over_the_limit_is_one_error_line(tmp_path):
    env = isolated_env(tmp_path, FALCONCHAT_MAX_INPUT_BYTES="100")
    result = falconchat("ask", cwd=tmp_path, env=env, input=b"x" * 1000)
    assert result.returncode == 2
    assert "larger than 100 bytes" in one_error_line(result.stderr)


def test_nothing_to_ask_is_a_usage_error(tmp_path, env):
    result = falconchat("ask", cwd=tmp_path, env=env, input=b"   \n")
    assert result.returncode == 2
    one_error_line(result.stderr)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--bogus", "hi"], "--bogus"),
        (["-t", "abc", "hi"], "temperature"),
        (["--top-p", "2", "hi"], "top-p"),
        (["--max-new-tokens", "0", "hi"], "max-new-tokens"),
        (["-m", "nosuchmodel", "hi"], "nosuchmodel"),
        (["--endpoint", "not-a-url", "hi"], "endpoint"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, env, args, needle):
    result = falconchat("ask", *args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert needle in one_error_line(result.stderr)
    assert result.stdout == b""


def test_a_message_that_cannot_fit_the_context_exits_2(tmp_path):
    env = isolated_env(tmp_path, FALCONCHAT_CONTEXT_LENGTH="256")
    result = falconchat("ask", "--max-new-tokens", "200", "word " * 300, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "tokens" in one_error_line(result.stderr)


@pytest.mark.parametrize("words", [980, 1020])
def test_a_message_between_the_context_asked_and_llama_cpp_s_padded_one_exits_2(tmp_path, words):
    """Issue 23 item 1: 1000 is padded to 1024 by llama.cpp, and such a prompt crashed (exit 1)."""
    env = isolated_env(tmp_path, FALCONCHAT_CONTEXT_LENGTH="1000")
    result = falconchat("ask", "--max-new-tokens", "10", "-t", "0", " ".join(["apple"] * words), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert re.search(r"needs \d+ tokens but only 990 fit", one_error_line(result.stderr))


def test_closed_pipe_ends_quietly(tmp_path, env):
    """`falconchat ask … | head -c 20`: no traceback, the model stops, the documented 141."""
    proc = subprocess.Popen(
        [*FALCONCHAT, "ask", "-t", "0", "--max-new-tokens", "300", "Count from one to one hundred in words."],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert len(proc.stdout.read(20)) == 20
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141
    assert err == b""


def test_ctrl_c_exits_130_and_keeps_what_was_shown(tmp_path, env):
    proc = subprocess.Popen(
        [*FALCONCHAT, "ask", "-t", "0", "--max-new-tokens", "400", "Count from one to one hundred in words."],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.read(10)
    proc.send_signal(signal.SIGINT)
    _rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert b"Traceback" not in err
    assert len(first) == 10


def test_does_not_wait_for_stdin_on_a_terminal(tmp_path, env):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        FALCONCHAT[0],
        [*FALCONCHAT[1:], "ask", *SHORT, "What is the capital of France?"],
        cwd=str(tmp_path),
        env=env,
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert child.before.strip()  # a reply was drawn without anything typed


# ---- the prompt rule, in process -----------------------------------------------------

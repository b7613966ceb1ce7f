"""A REPL reply while a busy process competes for the CPUs, in a pseudo-terminal that answers
cursor-position requests (so the bottom toolbar is drawn, as for a user). The tokens/s are
reported in the test output, beside `ask` piped under the same load (the REPL's own work
while streaming must not compete with the engine); the targets live in `falconchat bench`
(the under_load rows), never in a timed assertion here."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from repl_helpers import ENTER, FALCONCHAT, MODEL, isolated_env, pexpect

from falconchat.bench.probes import decode_rate
from falconchat.bench.under_load import busy_loops

pytestmark = pytest.mark.process  # a terminal, the real falconchat, busy processes

CPR_REQUEST = "\x1b[6n"
STATS = re.compile(r"(\d+) tokens in ([\d.]+)s \(([\d.]+) tokens/s\) · first token ([\d.]+)s")
TOKENS = "120"
# Counting runs on: the reply reaches max_new_tokens on any machine, so the rates are comparable.
REQUEST = "Count from one to one thousand, one number per line."
TIMEOUT = 180  # the machine may be busy with more than our own busy loop


def expect_answering_cpr(child, pattern: re.Pattern) -> re.Match:
    """Wait for `pattern`, answering every cursor-position request as a terminal does."""
    while True:
        child.expect([CPR_REQUEST, pattern])
        if child.match.group(0) == CPR_REQUEST:
            child.send("\x1b[10;1R")
        else:
            return child.match


def repl_rate(home) -> float:
    env = isolated_env(home)
    env.pop("PROMPT_TOOLKIT_NO_CPR", None)
    child = pexpect.spawn(
        FALCONCHAT[0],
        [*FALCONCHAT[1:], "--verbose", "-t", "0", "--max-new-tokens", TOKENS],
        cwd=str(home),
        env=env,
        timeout=TIMEOUT,
        encoding="utf-8",
        dimensions=(30, 120),
    )
    try:
        expect_answering_cpr(child, re.compile(re.escape(f"{MODEL} ·")))  # the toolbar: CPR was answered
        child.send(REQUEST + ENTER)
        match = expect_answering_cpr(child, STATS)
        tokens, total, first = int(match.group(1)), float(match.group(2)), float(match.group(4))
        assert tokens == int(TOKENS), match.group(0)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
        return (tokens - 1) / (total - first)
    finally:
        if child.isalive():
            child.terminate(force=True)


def ask_rate(home) -> float:
    result = subprocess.run(
        [*FALCONCHAT, "ask", "--verbose", "-t", "0", "--max-new-tokens", TOKENS, REQUEST],
        cwd=home,
        env=isolated_env(home),
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    return decode_rate(result.stderr.decode())


def test_a_repl_reply_while_a_busy_process_competes(tmp_path, capsys, record_property):
    competitors = max(1, (os.cpu_count() or 1) - 1)  # one busy loop per core but one
    started = time.monotonic()
    with busy_loops(competitors, limit_s=600):
        repl = repl_rate(tmp_path)
        ask = ask_rate(tmp_path)
    assert time.monotonic() - started < 600, "the busy loops ran out before the measurement ended"
    record_property("repl_tokens_per_s_loaded", repl)
    record_property("ask_tokens_per_s_loaded", ask)
    with capsys.disabled():
        print(
            f"\n[under load: {competitors} busy loop(s) on {os.cpu_count()} CPUs] REPL reply {repl:.1f} tokens/s, "
            f"ask piped {ask:.1f} tokens/s, REPL/ask {repl / ask:.2f}"
        )
    assert repl > 0 and ask > 0

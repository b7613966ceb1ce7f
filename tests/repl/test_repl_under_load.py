"""A REPL reply while a busy process competes for the CPUs, in a pseudo-terminal that answers
cursor-position requests (so the bottom toolbar is drawn, as for a user). The tokens/s are
reported in the test output, beside `ask` piped under the same load (the REPL's own work
while streaming must not compete with the engine); the targets live in `falconchat bench`
(the under_load rows), never in a timed assertion here."""

from __future__ import annotations

import os

import pytest

from falconchat.bench import probes
from falconchat.bench.under_load import REPL_MESSAGE, busy_loops
from processes import FALCONCHAT, isolated_env

pytestmark = pytest.mark.process  # a terminal, the real falconchat, busy processes

SETTINGS = ["--verbose", "-t", "0", "--max-new-tokens", "120"]  # a counting reply reaches the limit


def test_a_repl_reply_while_a_busy_process_competes(tmp_path, capsys, record_property):
    env = isolated_env(tmp_path)
    competitors = max(1, (os.cpu_count() or 1) - 1)  # one busy loop per core but one
    with busy_loops(competitors, limit_s=600):
        repl = probes.repl_reply_rate([*FALCONCHAT, *SETTINGS], env, REPL_MESSAGE, timeout=240)
        ask = probes.decode_rate(probes.run_piped([*FALCONCHAT, "ask", *SETTINGS, REPL_MESSAGE], env))
    record_property("repl_tokens_per_s_loaded", repl)
    record_property("ask_tokens_per_s_loaded", ask)
    with capsys.disabled():
        print(
            f"\n[{competitors} busy loop(s) on {os.cpu_count()} CPUs] REPL reply {repl:.1f} tokens/s on a terminal "
            f"answering CPR, ask piped {ask:.1f} tokens/s: REPL/ask {repl / ask:.2f}"
        )
    assert repl > 0 and ask > 0

"""`falconchat bench --quick` as CI's smoke test: it finishes and prints every row (figures are not asserted)."""

from __future__ import annotations

import json
import math
import os

import pytest

from falconchat.backends.threads import usable_cores
from processes import falconchat, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

CPUS = os.cpu_count() or 1
LOADED = max(1, CPUS - 1)  # the under-load rows: one busy loop per core but one
# The full run's rows, by name, on this machine: --quick has every one of them (issue 15, item 15).
FULL_RUN_ROWS = [
    "ask first output byte, piped",
    "falconchat --help",
    "falconchat --version",
    "decode tokens/s, ask piped",
    "decode tokens/s, ask on a terminal (Markdown)",
    "inter-token gap late in a long reply (terminal)",
    "inter-token gap late in a long reply, piped (the engine's own drift)",
    "time to first token, turn 10",
    "peak memory, chat session (4096-token context)",
    "peak memory, chat session (512-token context, as llm)",
    "batch of prompts, -j 8 (tokens/s)",
    "serve, 8 streaming clients at once (tokens/s, all)",
    "serve, 8 clients at once: time to first token (~30-token prompt)",
    "serve, 8 clients: the 4 free ones' tokens/s beside 4 held to a JSON schema",
    "one request alone through the batching engine (decode tokens/s)",
    "serve, 32 clients retrying 429s at once (tokens/s served)",
    f"decode tokens/s, {LOADED} busy loop(s) on {CPUS} CPUs (default threads)",
    f"decode tokens/s, {LOADED} busy loop(s) (default threads) vs 1 thread",
    f"REPL reply decode tokens/s, {LOADED} busy loop(s) (terminal answering CPR: toolbar drawn)",
    *(
        f"decode tokens/s, {load} busy loop(s): {policy}"
        for load in sorted({0, LOADED, CPUS})
        for policy in (
            f"all cores ({CPUS})",
            f"cores − 1 ({max(1, CPUS - 1)})",
            f"physical cores ({usable_cores()})",
            "load average at start",
            "1 thread",
        )
    ),
    "ask total, logged",
    "log one exchange (in process)",
    "logs -q search, a generated log (100k exchanges; --quick 10k) (in process)",
    "falconchat logs -q, a generated log (100k exchanges; --quick 10k)",
    "ask -f 200 KB tree: first byte",
    "batch over 4 replicas, -j 4 each (items/s; simulated: 4 slots × 100 tok/s)",
    "batch over 4 replicas, one killed half way (items/s; every item answered once)",
    "batch CPU per item, an OpenAI file over 4 replicas (10,000 lines; --quick 1,000)",
]


def test_bench_quick_prints_every_row(tmp_path):
    result = falconchat("bench", "--quick", "--json", cwd=tmp_path, env=isolated_env(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    rows = json.loads(result.stdout)
    assert [row["what"] for row in rows] == FULL_RUN_ROWS
    for row in rows:
        assert math.isfinite(row["value"]) and row["value"] > 0, row
        assert row["baseline_value"] is None or row["baseline_value"] > 0, row


def test_bench_says_each_step_on_stderr_also_in_a_pipe(tmp_path):
    """Issue 15, item 15: a run is never silent until its table, even when stderr is a log file."""
    result = falconchat(
        "bench", "--quick", "--only", "startup", "--json", cwd=tmp_path, env=isolated_env(tmp_path), timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    assert any(line.startswith("falconchat bench:") and "--help" in line for line in lines), lines
    assert lines[-1].startswith("falconchat bench:") and lines[-1].endswith("done"), lines
    assert "\r" not in result.stderr.decode() and "\x1b" not in result.stderr.decode()  # one line per step
    assert [row["what"] for row in json.loads(result.stdout)] == ["falconchat --help", "falconchat --version"]


def test_the_sources_row_measures_ask_f_against_the_same_text_piped(tmp_path):
    result = falconchat(
        "bench", "--quick", "--only", "sources", "--json", cwd=tmp_path, env=isolated_env(tmp_path), timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()
    [row] = json.loads(result.stdout)
    assert row["what"] == "ask -f 200 KB tree: first byte" and row["baseline"] == "the same text piped"
    assert row["value"] > 0 and row["baseline_value"] > 0 and row["target"] == "≤ 1.1×"


def test_the_scale_rows_run_batch_over_simulated_replicas_with_their_baselines(tmp_path):
    """Issue 27: 4 replicas against 1, one of 4 killed half way (every item answered once, or the
    row fails), and falconchat's CPU per item of an OpenAI file against the replicas'."""
    result = falconchat(
        "bench", "--quick", "--only", "scale", "--json", cwd=tmp_path, env=isolated_env(tmp_path), timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()
    rows = json.loads(result.stdout)
    assert [(row["baseline"], row["target"]) for row in rows] == [
        ("1 replica, -j 4", "≥ 3.6 × 1 replica"),
        ("4 healthy replicas", "≥ 0.7 × 4 healthy"),
        ("the replicas' CPU per request", "≤ 1 ms"),
    ]
    for row in rows:
        assert math.isfinite(row["value"]) and row["value"] > 0 and row["baseline_value"] > 0, row

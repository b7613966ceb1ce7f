"""`bench`'s baselines built on llama.cpp (the `llm` CLI) are loaded as falconchat loads a model
(weights not repacked: on AMX CPUs the repacked kernels die with SIGILL), and a baseline that
dies anyway never ends the bench: its rows say how it ended, every other row is measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from falconchat.bench.probes import exit_said
from processes import falconchat, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat and its peers

# A stand-in for `llm` that dies as llm -m SmolLM2 does on an AMX CPU: by SIGILL, printing nothing.
DIES_BY_SIGILL = """\
import os, resource, signal
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
os.kill(os.getpid(), signal.SIGILL)
"""


def test_a_baseline_killed_by_sigill_is_said_in_its_rows_and_every_other_row_is_measured(tmp_path):
    fake = tmp_path / "fake"
    (fake / "llm").mkdir(parents=True)
    (fake / "llm" / "__init__.py").write_text(DIES_BY_SIGILL)
    env = isolated_env(tmp_path, PYTHONPATH=str(fake))
    result = falconchat(
        "bench", "--quick", "--only", "first_byte,startup,memory", "--json", cwd=tmp_path, env=env, timeout=600
    )
    err = result.stderr.decode()
    assert result.returncode == 0, err
    rows = {row["what"]: row for row in json.loads(result.stdout)}
    assert len(rows) == 5
    against_llm = [row for row in rows.values() if row["baseline"].startswith("llm")]
    assert [row["what"] for row in against_llm] == [
        "ask first output byte, piped",
        "peak memory, chat session (4096-token context)",
        "peak memory, chat session (512-token context, as llm)",
    ]
    for row in rows.values():
        assert row["value"] > 0, row  # ours: measured
    for row in against_llm:
        assert row["baseline"] in ("llm exited 132 (SIGILL)", "llm chat exited 132 (SIGILL)"), row
        assert row["baseline_value"] is None and row["ratio"] is None, row
    assert rows["falconchat --help"]["baseline_value"] > 0
    notes = [line for line in err.splitlines() if "baseline unavailable" in line]
    assert notes and all(line.startswith("falconchat bench: baseline unavailable: llm") for line in notes), err
    assert "printed nothing" not in err and "error:" not in err


def test_the_llm_baseline_loads_its_model_with_weights_not_repacked(tmp_path):
    """The launcher bench runs `llm` through: a module run by it sees llama.cpp's default model
    parameters without the repacked (extra) buffer types."""
    (tmp_path / "show_params.py").write_text(
        "import llama_cpp\nprint(llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts)\n"
    )
    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            "import llama_cpp; print(llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert plain.stdout.strip() == "True"  # llama.cpp's own default: repacked
    run = subprocess.run(
        [sys.executable, "-m", "falconchat.bench.peers", "show_params"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=isolated_env(tmp_path, PYTHONPATH=str(tmp_path)),
        check=True,
    )
    assert run.stdout.strip() == "False"


def test_the_test_peers_launcher_loads_the_same_way(tmp_path):
    import peers

    (tmp_path / "show_params.py").write_text(
        "import llama_cpp\nprint(llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts)\n"
    )
    run = subprocess.run(
        peers.command("show_params"),
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path, PYTHONPATH=str(tmp_path)),
        check=True,
    )
    assert run.stdout.strip() == "False"


def test_an_exit_is_said_as_a_shell_says_it():
    assert exit_said("llm", -4) == "llm exited 132 (SIGILL)"
    assert exit_said("llm", -11) == "llm exited 139 (SIGSEGV)"
    assert exit_said("llm", 2) == "llm exited 2"

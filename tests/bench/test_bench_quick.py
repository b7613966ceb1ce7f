"""`bench --quick` is a short smoke run (issue 15, item 15): its workload is small in every
setting, and every group is said on stderr as it starts while stdout holds only the table.
In process, with the groups' measurements replaced (the real run: tests/bench/test_bench.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile

import pytest

from falconchat.bench import runner
from falconchat.bench.runner import ROW_GROUPS, Bench, Workload
from falconchat.bench.stats import Row
from falconchat.cli.app import run
from falconchat.errors import ExitCode
from in_process import Terminal, environment


def test_the_quick_workload_is_smaller_than_the_full_one_in_every_setting():
    quick, full = Workload.of(True), Workload.of(False)
    for field in dataclasses.fields(Workload):
        assert getattr(quick, field.name) < getattr(full, field.name), field.name
    # One cold measurement of each figure, every rate read over a second at most.
    assert not quick.warm_up and quick.reps == quick.drift_reps == quick.load_reps == 1
    assert quick.cap_s <= 1.0
    assert max(quick.rate_tokens, quick.far, quick.engine_tokens, quick.load_tokens) <= 100


@pytest.fixture
def bench_env(monkeypatch, tmp_path):
    """A command environment where every group measures nothing (one row, named after its
    group); and `seen[name]`: what stderr held when that group started measuring."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the bench's own home directory
    env = environment(tmp_path)
    seen: dict[str, str] = {}
    for name in ROW_GROUPS:

        def group(bench: Bench, name: str = name) -> list[Row]:
            seen[name] = env.stderr.text()
            return [Row(f"row of {name}", 1.0, "s", "a baseline", 2.0, "—")]

        monkeypatch.setattr(Bench, name, group)
    return env, seen


def test_each_group_is_said_on_stderr_as_it_starts_and_stdout_holds_only_the_table(bench_env):
    env, seen = bench_env
    assert run(["bench", "--quick"], env) == ExitCode.OK
    err = env.stderr.text()
    lines = err.splitlines()
    assert err.endswith("\n") and all(line.startswith("falconchat bench: ") for line in lines), lines
    count = len(ROW_GROUPS)
    for index, name in enumerate(ROW_GROUPS, 1):
        said = f"[{index}/{count}] {name}: {runner.GROUPS[name]}"
        assert sum(said in line for line in lines) == 1, (said, lines)
        assert seen[name].splitlines()[-1].endswith(said)  # said just before it measured
    assert lines[-1].endswith(" done")
    out = env.stdout.text()
    assert "falconchat bench:" not in out
    for name in ROW_GROUPS:
        assert f"row of {name}" in out and f"row of {name}" not in err


def test_only_some_groups_are_counted_and_said(bench_env):
    env, _ = bench_env
    assert run(["bench", "--quick", "--only", "under_load,startup", "--json"], env) == ExitCode.OK
    lines = env.stderr.text().splitlines()
    groups = [line for line in lines if re.search(r"\[\d/\d\] \w+: ", line)]
    assert [re.sub(r"^falconchat bench: +\d+s ", "", line) for line in groups] == [
        f"[1/2] startup: {runner.GROUPS['startup']}",
        f"[2/2] under_load: {runner.GROUPS['under_load']}",
    ]
    assert [row["what"] for row in json.loads(env.stdout.text())] == ["row of startup", "row of under_load"]


def test_on_a_terminal_progress_is_one_live_line(bench_env):
    env, seen = bench_env
    env.stderr = Terminal(tty=True)
    assert run(["bench", "--quick", "--json"], env) == ExitCode.OK
    err = env.stderr.text()
    assert "\n" not in err  # redrawn in place, never scrolled
    assert err.count("\r\x1b[2K") == len(ROW_GROUPS) + 2  # every group, "done", then cleared
    assert err.endswith("\r\x1b[2K")
    for index, name in enumerate(ROW_GROUPS, 1):
        assert seen[name].endswith(f"[{index}/{len(ROW_GROUPS)}] {name}: {runner.GROUPS[name]}")
    assert len(json.loads(env.stdout.text())) == len(ROW_GROUPS)


def test_on_a_terminal_an_error_starts_on_a_line_of_its_own(bench_env, monkeypatch):
    """Issue 23 (3): the live progress line was not ended, so `· llmfalconchat: error:` glued."""
    env, _ = bench_env
    env.stderr = Terminal(tty=True)

    def broken(bench: Bench) -> list[Row]:
        bench.say("llm")
        raise RuntimeError("the decoder went away")

    monkeypatch.setattr(Bench, "decode", broken)
    assert run(["bench", "--quick", "--json"], env) == 1
    err = env.stderr.text()
    step = f"[3/{len(ROW_GROUPS)}] decode · llm"
    assert re.search(re.escape(step) + r"\nfalconchat: error: unexpected RuntimeError: the decoder went away", err), err
    assert env.stdout.text() == ""


def test_a_note_is_a_line_that_stays_and_the_live_line_goes_on_below_it(bench_env, monkeypatch):
    env, _ = bench_env
    env.stderr = Terminal(tty=True)

    def noted(bench: Bench) -> list[Row]:
        bench.say("llm")
        return [Row("row of first_byte", 1.0, "s", bench.failed(RuntimeError("llm exited 132 (SIGILL)")), None, "—")]

    monkeypatch.setattr(Bench, "first_byte", noted)
    assert run(["bench", "--quick", "--json"], env) == ExitCode.OK
    err = env.stderr.text()
    assert err.count("\n") == 1  # the note's line; the progress stays one live line
    before, note, after = re.split(r"\r\x1b\[2K(falconchat bench: baseline unavailable: [^\r\n]*)\n", err)
    assert before.endswith(f"[1/{len(ROW_GROUPS)}] first_byte · llm")
    assert note.startswith("falconchat bench: baseline unavailable: llm exited 132 (SIGILL)")
    assert after.startswith("falconchat bench: ") and "first_byte · llm" in after.split("\r")[0]
    assert json.loads(env.stdout.text())[0]["baseline"] == "llm exited 132 (SIGILL)"

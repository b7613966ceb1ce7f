"""`batch --plain` meant nothing (batch writes JSON records, never Markdown) and was taken in
silence: now it is refused in one line that says why, and batch's --help does not offer it."""

from __future__ import annotations

import pytest

from falconchat.cli.app import run
from falconchat.errors import ExitCode
from in_process import environment


@pytest.mark.parametrize("argv", [["batch", "--plain"], ["--plain", "batch"]])
def test_plain_is_refused_by_batch_before_anything_runs(tmp_path, argv):
    env = environment(tmp_path, stdin=b"hi\n")
    assert run(argv, env) == ExitCode.USAGE
    lines = env.stderr.text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("falconchat: error: --plain: batch writes JSON Lines records")
    assert env.stdout.text() == ""


def test_batch_help_does_not_offer_plain_and_ask_still_does(tmp_path, capsys):
    for command, offered in (("batch", False), ("ask", True)):
        assert run([command, "--help"], environment(tmp_path)) == ExitCode.OK
        shown = capsys.readouterr().out  # Typer's help goes to the process's stdout
        assert "--concurrency" in shown or command == "ask"
        assert ("--plain" in shown) == offered, command


def test_the_environment_setting_is_a_preference_batch_passes_over(tmp_path):
    """FALCONCHAT_PLAIN=1 is for the chat and ask; it does not make every batch fail."""
    env = environment(tmp_path, stdin=b"", FALCONCHAT_PLAIN="1")
    run(["batch"], env)
    assert "--plain" not in env.stderr.text()

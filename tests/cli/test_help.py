"""`--help` (issue 23 item 15): every command shows examples, arguments and options are named
by what they take (never Typer's `<str>` / `<int range>`), --endpoint says what it takes, and a
subcommand's mistyped option points at that subcommand's help."""

from __future__ import annotations

import re

import pytest

from falconchat.cli.app import run
from in_process import environment

COMMANDS = [["--help"], ["chat", "--help"], ["ask", "--help"], ["batch", "--help"], ["serve", "--help"]]
COMMANDS += [
    ["models", "--help"],
    ["models", "pull", "--help"],
    ["models", "rm", "--help"],
    ["models", "info", "--help"],
    ["bench", "--help"],
    ["logs", "--help"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:-1]) or "falconchat")
def test_every_command_s_help_has_examples_and_plain_metavars(tmp_path, capsys, argv):
    env = environment(tmp_path)
    assert run(argv, env) == 0, env.stderr.text()
    shown = capsys.readouterr().out  # Click writes help to the process's stdout
    name = " ".join(["falconchat", *argv[:-1]])
    assert "Examples:" in shown, shown
    examples = shown.split("Examples:")[1].strip().splitlines()
    assert examples and all(re.match(r"\s*(\w+=\S+ )?(echo .*\| |git diff \| )?falconchat", e) for e in examples)
    assert all(name.split()[-1] in e for e in examples), examples  # each shows this command
    assert not re.search(r"<\w[\w ]*>", shown), shown  # no <str>, <int range>, <path>
    assert "text-generation-inference base URL" not in shown


def test_every_command_has_examples_listed():
    from typer.main import get_command

    from falconchat.cli.app import app
    from falconchat.cli.help_text import EXAMPLES

    names = {"falconchat", *(f"falconchat {n}" for n in get_command(app).commands)}
    assert names <= set(EXAMPLES), names - set(EXAMPLES)


def test_the_endpoint_option_says_it_takes_tgi_and_openai_compatible_servers(tmp_path, capsys):
    assert run(["ask", "--help"], environment(tmp_path)) == 0
    shown = " ".join(re.sub(r"-\n\s+", "-", capsys.readouterr().out).split())  # as one line, unwrapped
    assert "--endpoint URL A server's base URL: text-generation-inference or OpenAI-compatible" in shown


@pytest.mark.parametrize("argv, where", [(["ask", "--temprature", "0", "hi"], "falconchat ask --help")])
def test_a_mistyped_option_points_at_its_command_s_help(tmp_path, argv, where):
    env = environment(tmp_path)
    assert run(argv, env) == 2
    [line] = env.stderr.text().splitlines()
    assert line.startswith("falconchat: error: No such option: --temprature") and line.endswith(f"(see {where})")
    env = environment(tmp_path)
    assert run(["--temprature", "0"], env) == 2
    assert env.stderr.text().rstrip().endswith("(see falconchat --help)")

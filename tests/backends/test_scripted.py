"""The scripted backend reached as every backend is: a `[models.NAME]` entry with
`backend = "scripted"` and its `replies`, chosen with `-m NAME` (a user's own tests of a script
that runs falconchat), and the checks on such an entry."""

from __future__ import annotations

import json

import pytest

from falconchat.cli.app import run
from falconchat.errors import ExitCode
from in_process import environment

CONFIG = """
[models.fake]
backend = "scripted"
replies = ["Hello from a script.", "{\\"name\\": \\"Ada\\"}"]
"""


@pytest.fixture
def env(tmp_path):
    (tmp_path / "config.toml").write_text(CONFIG)
    return environment(tmp_path, b"", FALCONCHAT_CONFIG="config.toml", FALCONCHAT_LOG="0")


def test_ask_answers_with_the_scripted_reply(env):
    assert run(["ask", "-m", "fake", "Say hello."], env) == 0
    assert env.stdout.text() == "Hello from a script.\n"


def test_ask_json_records_it_as_any_model_s_reply(env):
    assert run(["ask", "-m", "fake", "--json", "Say hello."], env) == 0
    record = json.loads(env.stdout.text())
    assert (record["reply"], record["finish_reason"], record["model"]) == ("Hello from a script.", "stop", "fake")


def test_the_schema_check_refuses_a_scripted_reply_that_does_not_fit(env):
    assert run(["ask", "-m", "fake", "--schema", "name, age int", "Who?"], env) == ExitCode.REJECTED
    assert env.stdout.text() == ""
    assert "the reply is not JSON" in env.stderr.text()


def test_models_lists_it(env):
    assert run(["models"], env) == 0
    line = next(line.split() for line in env.stdout.text().splitlines() if "fake" in line)
    assert line == ["fake", "scripted", "chat", "its", "replies", "ok", "(2", "scripted", "replies", "left)"]


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ('backend = "scripted"', 'replies = ["…"] and backend = "scripted" (a model for tests) go together'),
        ('backend = "tgi"\nendpoint = "http://127.0.0.1:9"\nreplies = ["x"]', "go together"),
        ('backend = "scripted"\nreplies = "x"', "replies must be a list of strings"),
        ('backend = "scripted"\nreplies = ["x"]\nformat = "native"', "must be one of chat, falcon"),
    ],
)
def test_a_wrong_entry_is_one_config_error(tmp_path, entry, error):
    (tmp_path / "config.toml").write_text(f"[models.fake]\n{entry}\n")
    env = environment(tmp_path, b"", FALCONCHAT_CONFIG="config.toml", FALCONCHAT_LOG="0")
    assert run(["ask", "-m", "fake", "hi"], env) == ExitCode.USAGE
    assert error in env.stderr.text() and len(env.stderr.text().splitlines()) == 1

"""The commands run in process, through `environment.Environment`: stdin rules, exit codes,
and `ask`/`batch` against a scripted endpoint over real HTTP. The same paths are proved on the
real program in tests/test_ask.py and tests/batch/test_batch.py; these give an answer in milliseconds."""

from __future__ import annotations

import json

import pytest

from falconchat.cli.app import run
from falconchat.cli.stdin import read_prompt
from falconchat.errors import ExitCode, InputError, UsageError
from in_process import environment


@pytest.mark.parametrize(
    "prompt, stdin, expected",
    [
        ("Summarise:", b"some text", "Summarise:\n\nsome text"),
        (None, b"only stdin", "only stdin"),
        ("-", b"dash means stdin", "dash means stdin"),
        ("just the argument", None, "just the argument"),
        ("with empty pipe", b"", "with empty pipe"),
        ("bad bytes", b"\xff\x1b[2Jok", "bad bytes\n\n\ufffdok"),
    ],
)
def test_prompt_rule(tmp_path, prompt, stdin, expected):
    assert read_prompt(environment(tmp_path, stdin), prompt, 1000) == expected


def test_prompt_limits(tmp_path):
    with pytest.raises(InputError):
        read_prompt(environment(tmp_path, b"x" * 11), None, 10)
    with pytest.raises(InputError):
        read_prompt(environment(tmp_path), "y" * 11, 10)
    with pytest.raises(UsageError):
        read_prompt(environment(tmp_path), None, 10)


def test_ask_streams_the_reply_to_stdout(tmp_path, tgi_endpoint):
    tgi_endpoint.stream([" Hello", " world"], "eos_token")
    env = environment(tmp_path, FALCONCHAT_ENDPOINT=tgi_endpoint.url)
    assert run(["ask", "hi"], env) == ExitCode.OK
    assert env.stdout.text() == "Hello world\n"
    assert env.stderr.text() == ""
    assert tgi_endpoint.requests[0].body["inputs"].endswith("User: hi\nAssistant:")


def test_piped_stdin_joins_the_prompt(tmp_path, tgi_endpoint):
    tgi_endpoint.stream([" ok"], "eos_token")
    env = environment(tmp_path, b"the text", FALCONCHAT_ENDPOINT=tgi_endpoint.url)
    assert run(["ask", "Summarise:"], env) == ExitCode.OK
    assert "User: Summarise:\n\nthe text\nAssistant:" in tgi_endpoint.requests[0].body["inputs"]


@pytest.mark.parametrize(
    "status, code",
    [(401, ExitCode.AUTH_REJECTED), (422, ExitCode.REJECTED), (503, ExitCode.OVERLOADED), (500, ExitCode.ERROR)],
)
def test_endpoint_errors_become_one_line_and_their_exit_code(tmp_path, tgi_endpoint, status, code):
    tgi_endpoint.error(status, "refused here")
    env = environment(tmp_path, FALCONCHAT_ENDPOINT=tgi_endpoint.url, FALCONCHAT_TIMEOUT="2")
    import falconchat.backends.tgi as tgi

    tgi.BACKOFF_S, saved = 0.001, tgi.BACKOFF_S
    try:
        assert run(["ask", "hi"], env) == code
    finally:
        tgi.BACKOFF_S = saved
    lines = env.stderr.text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("falconchat: error: "), lines
    assert env.stdout.text() == ""


def test_unreachable_endpoint_is_exit_3(tmp_path, closed_port_url):
    env = environment(tmp_path, FALCONCHAT_ENDPOINT=closed_port_url)
    assert run(["ask", "hi"], env) == ExitCode.UNREACHABLE
    assert "cannot reach" in env.stderr.text()


@pytest.mark.parametrize(
    "argv",
    [
        ["ask", "--no-such-flag"],
        ["ask", "-t", "hot", "hi"],
        ["nosuchcommand"],
        ["ask", "--max-new-tokens", "-5", "x"],
        ["bench", "--only", "nosuchgroup"],
        ["bench", "--only", ","],
    ],
)
def test_usage_errors_are_exit_2(tmp_path, argv):
    env = environment(tmp_path)
    assert run(argv, env) == ExitCode.USAGE
    lines = env.stderr.text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("falconchat: error: "), lines


def test_ask_json_reports_the_error_object(tmp_path, closed_port_url):
    env = environment(tmp_path, FALCONCHAT_ENDPOINT=closed_port_url)
    assert run(["ask", "--json", "hi"], env) == ExitCode.UNREACHABLE
    record = json.loads(env.stdout.text())
    assert record["error"]["kind"] == "unreachable" and record["error"]["exit_code"] == 3


def test_batch_reads_stdin_and_writes_one_record_per_line(tmp_path, tgi_endpoint):
    tgi_endpoint.echo()
    env = environment(tmp_path, b"first\nsecond\n", FALCONCHAT_ENDPOINT=tgi_endpoint.url)
    assert run(["batch", "-j", "2"], env) == ExitCode.OK
    records = [json.loads(line) for line in env.stdout.text().splitlines()]
    assert [r["reply"] for r in records] == ["echo: first", "echo: second"]


def test_batch_without_input_on_a_terminal_is_a_usage_error(tmp_path):
    env = environment(tmp_path)
    assert run(["batch"], env) == ExitCode.USAGE
    assert "nothing to do" in env.stderr.text()


def test_errors_carry_their_kind_and_exit_code():
    from falconchat import errors

    kinds = {
        cls.kind for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.FalconchatError)
    }
    assert {"usage", "config", "input", "unreachable", "timeout", "auth_rejected", "rejected", "overloaded"} <= kinds
    assert errors.Timeout("x").exit_code == ExitCode.UNREACHABLE == 3

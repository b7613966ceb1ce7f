"""`falconchat ask --json` and `--no-stream` as real processes: the bundled model, failing
endpoints, Ctrl-C; every object checked against docs/ask-json.schema.json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from falconchat.errors import (
    AuthRejected,
    ConfigError,
    EndpointError,
    FalconchatError,
    InputError,
    Overloaded,
    Rejected,
    Timeout,
    Unreachable,
    UsageError,
)
from falconchat.records import error_object
from json_schema import errors as schema_errors
from processes import falconchat, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

SHORT = ["-t", "0", "--max-new-tokens", "16"]
# The real CLI with the endpoint's retry backoff shortened (the tests' usual trick).
QUICK = "import falconchat.backends.tgi as tgi; tgi.BACKOFF_S = 0.001; from falconchat.cli.app import main; main()"


@pytest.fixture
def env(tmp_path):
    return isolated_env(tmp_path)


def one_object(stdout: bytes) -> dict:
    """stdout is exactly one line of JSON, valid by the schema."""
    text = stdout.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    record = json.loads(text)
    assert schema_errors(record, "ask-json.schema.json") == []
    return record


def quick(args: list[str], tmp_path, env, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-c", QUICK, *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


def test_bundled_model_answers_as_one_valid_object(tmp_path, env):
    result = falconchat("ask", "--json", *SHORT, "What is the capital of France?", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    record = one_object(result.stdout)
    assert record["reply"].strip()
    assert record["error"] is None
    assert record["finish_reason"] in ("stop", "length")
    assert 1 <= record["completion_tokens"] <= 16 and record["prompt_tokens"] > 5
    assert 0 <= record["first_token_s"] <= record["duration_s"]
    assert (record["model"], record["backend"], record["endpoint"]) == ("smollm2", "local", None)
    assert record["settings"]["temperature"] == 0 and record["settings"]["max_new_tokens"] == 16


def test_no_stream_prints_the_same_reply_once(tmp_path, env):
    streamed = falconchat("ask", *SHORT, "--seed", "1", "Name three colours.", cwd=tmp_path, env=env)
    waited = falconchat("ask", *SHORT, "--seed", "1", "--no-stream", "Name three colours.", cwd=tmp_path, env=env)
    assert streamed.returncode == waited.returncode == 0, waited.stderr
    assert waited.stdout == streamed.stdout and waited.stdout.strip()


@pytest.mark.parametrize(
    "fault, args, kind, code",
    [
        (lambda ep: ep.error(429, "Model is overloaded", "overloaded"), [], "overloaded", 6),
        (lambda ep: ep.error(401, "Invalid token"), [], "auth_rejected", 4),
        (lambda ep: ep.error(422, "Input validation error: `max_new_tokens` too big", "validation"), [], "rejected", 5),
        (lambda ep: ep.hang(), ["--timeout", "1"], "timeout", 3),
        (None, [], "unreachable", 3),
        (lambda ep: ep.error_event([" Hello", " wor"], "CUDA out of memory"), [], "endpoint", 1),
    ],
    ids=["429", "401", "422", "hang", "refused", "mid-stream"],
)
def test_a_failing_endpoint_gives_an_error_object_and_the_same_exit_code(
    tgi_endpoint, closed_port_url, tmp_path, env, fault, args, kind, code
):
    url = closed_port_url if fault is None else tgi_endpoint.url
    if fault is not None:
        fault(tgi_endpoint)
    plain = quick(["ask", "--endpoint", url, *args, "hi"], tmp_path, env)
    result = quick(["ask", "--json", "--endpoint", url, *args, "hi"], tmp_path, env)
    assert result.returncode == plain.returncode == code, result.stderr
    record = one_object(result.stdout)
    assert record["error"]["kind"] == kind and record["error"]["exit_code"] == code
    assert record["finish_reason"] is None
    # stderr still says what went wrong, in the same words as the object and as without --json.
    assert result.stderr.decode() == plain.stderr.decode() == f"falconchat: error: {record['error']['message']}\n"
    assert record["endpoint"] == url and record["backend"] == ("auto" if fault is None else "tgi")  # auto: never asked
    if kind == "endpoint":
        assert record["reply"] == "Hello wor"  # what arrived before the failure is kept


def test_a_bad_value_is_an_error_object_without_settings(tmp_path, env):
    result = falconchat("ask", "--json", "-t", "hot", "hi", cwd=tmp_path, env=env)
    assert result.returncode == 2
    record = one_object(result.stdout)
    assert record["error"]["kind"] == "config" and "temperature" in record["error"]["message"]
    assert record["settings"] is None and record["model"] is None


def test_a_command_line_typer_cannot_parse_leaves_stdout_empty(tmp_path, env):
    """An unknown flag is refused before `--json` is known: exit 2, stdout empty (documented)."""
    result = falconchat("ask", "--json", "--bogus", "hi", cwd=tmp_path, env=env)
    assert result.returncode == 2 and result.stdout == b""


def test_nothing_to_ask_is_a_usage_error_object(tmp_path, env):
    result = falconchat("ask", "--json", cwd=tmp_path, env=env, input=b"  \n")
    assert result.returncode == 2
    assert one_object(result.stdout)["error"]["kind"] == "usage"


def test_ctrl_c_gives_the_partial_reply_as_cancelled_and_130(tgi_endpoint, tmp_path, env):
    tgi_endpoint.forever(interval=0.02)
    proc = subprocess.Popen(
        [sys.executable, "-m", "falconchat", "ask", "--json", "--endpoint", tgi_endpoint.url, "hi"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not tgi_endpoint.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # some tokens arrive
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    record = one_object(out)
    assert record["finish_reason"] == "cancelled" and record["error"]["kind"] == "interrupted"
    assert record["reply"].startswith("word")
    assert b"Traceback" not in err
    assert tgi_endpoint.disconnected.wait(5)  # the HTTP stream was closed: the endpoint stops


@pytest.mark.parametrize(
    "exc, kind",
    [
        (UsageError("x"), "usage"),
        (ConfigError("x"), "config"),
        (InputError("x"), "input"),
        (Unreachable("x"), "unreachable"),
        (Timeout("x"), "timeout"),
        (AuthRejected("x"), "auth_rejected"),
        (Rejected("x"), "rejected"),
        (Overloaded("x"), "overloaded"),
        (EndpointError("x"), "endpoint"),
        (FalconchatError("x"), "error"),
        (KeyboardInterrupt(), "interrupted"),
        (ValueError("x"), "internal"),
    ],
)
def test_every_error_maps_to_a_documented_kind_and_its_exit_code(exc, kind):
    obj = error_object(exc)
    assert obj["kind"] == kind
    assert obj["exit_code"] == getattr(exc, "exit_code", 130 if kind == "interrupted" else 1)
    assert schema_errors(obj, "ask-json.schema.json", "/$defs/error") == []

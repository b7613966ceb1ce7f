"""`falconchat batch` as a real process: against the scripted endpoint (faults, latency,
kills) and the real `falconchat serve`; every output line checked against
docs/batch-line.schema.json."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from json_schema import errors as schema_errors
from processes import isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

# The real CLI with the retry waits shortened: the endpoint client's own and batch's.
QUICK = (
    "import falconchat.backends.tgi as tgi, falconchat.batch.runner as batch; "
    "tgi.BACKOFF_S = 0.001; batch.BACKOFF_S = 0.01; "
    "from falconchat.cli.app import main; main()"
)
SUMMARY = re.compile(r"^falconchat batch: (\d+) items: (\d+) answered, (\d+) failed")


@pytest.fixture
def env(tmp_path):
    return isolated_env(tmp_path)


def command(*args: str, quick: bool = True) -> list[str]:
    return [sys.executable, *(["-c", QUICK] if quick else ["-m", "falconchat"]), "batch", *args]


def run(*args: str, cwd: Path, env: dict, input: bytes | None = None, quick: bool = True, timeout: float = 120):
    return subprocess.run(
        command(*args, quick=quick),
        cwd=cwd,
        env=env,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


def jsonl(n: int, **extra) -> bytes:
    return b"".join(
        json.dumps({"id": f"q{i:03}", "prompt": f"question {i}", **extra}).encode() + b"\n" for i in range(n)
    )


def results(data: bytes) -> list[dict]:
    """Every line whole, JSON, and valid by the schema."""
    assert data == b"" or data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode().splitlines()]
    for record in records:
        assert schema_errors(record, "batch-line.schema.json") == [], record
    return records


def summary(stderr: bytes) -> tuple[int, int, int]:
    last = stderr.decode().strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, stderr.decode()
    return tuple(int(g) for g in match.groups())


# ---- the scripted endpoint ---------------------------------------------------------------


def fault_plan(message: str, attempt: int):
    """Faults by prompt number: some pass after retries, some never do."""
    i = int(message.split()[-1])
    if i % 50 == 7:
        return 422  # rejected: never retried
    if i % 100 == 99:
        return 503  # overloaded every time: an error after all retries
    if i % 10 == 1 and attempt <= 5:
        return 429  # more than the client's own 3 retries: batch retries it
    if i % 10 == 3 and attempt == 1:
        return 503  # the client's own retry absorbs it
    if i % 10 == 5 and attempt == 1:
        return "hang"  # a timeout: batch retries it
    return None


def test_200_prompts_with_jitter_and_faults_each_answered_or_failed_once_in_order(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo(latency=0.03, jitter=0.025, fault=fault_plan)
    out = tmp_path / "out.jsonl"
    result = run(
        "-",
        "-o",
        str(out),
        "--endpoint",
        tgi_endpoint.url,
        "--timeout",
        "2",
        "-j",
        "16",
        cwd=tmp_path,
        env=env,
        input=jsonl(200),
    )
    assert result.returncode == 1, result.stderr  # some items failed for good
    records = results(out.read_bytes())
    assert [r["id"] for r in records] == [f"q{i:03}" for i in range(200)]
    for i, record in enumerate(records):
        if i % 50 == 7:
            assert record["error"]["kind"] == "rejected" and record["attempts"] == 1
            assert tgi_endpoint.echo_attempts[f"question {i}"] == 1  # not retried
        elif i % 100 == 99:
            assert record["error"]["kind"] == "overloaded" and record["attempts"] == 5  # 1 + --retries 4
        else:
            assert record["reply"] == f"echo: question {i}", record
            assert record["finish_reason"] == "stop" and record["completion_tokens"] == 3
            assert record["attempts"] == (2 if i % 10 in (1, 5) else 1), record
    assert summary(result.stderr) == (200, 194, 6)
    # On a pipe, stderr holds the summary and nothing else: no progress bar, no colour.
    assert len(result.stderr.splitlines()) == 1 and b"\x1b" not in result.stderr


def test_sixteen_in_flight_is_over_ten_times_the_throughput_of_one(tmp_path, env):
    """Throughput while requests run: requests over the time from the first one sent to the
    last one answered, seen by the endpoint (process start-up, ~0.5 s either way, is left
    out: it does not grow with the batch). 0.2 s per request, 32 prompts."""
    from tgi_endpoint import TgiEndpoint

    rates = {}
    for jobs in (1, 16):
        with TgiEndpoint() as endpoint:
            endpoint.echo(latency=0.2)
            result = run("-", "--endpoint", endpoint.url, "-j", str(jobs), cwd=tmp_path, env=env, input=jsonl(32))
            assert result.returncode == 0, result.stderr
            assert [r["reply"] for r in results(result.stdout)] == [f"echo: question {i}" for i in range(32)]
            posts = [r.at for r in endpoint.requests if r.method == "POST"]
            assert len(posts) == 32
            rates[jobs] = 32 / (max(posts) + 0.2 - min(posts))
    print(f"items/s: -j 1 {rates[1]:.1f}, -j 16 {rates[16]:.1f}, ratio {rates[16] / rates[1]:.1f}")
    assert rates[16] >= 10 * rates[1]


def test_sigkill_halfway_then_resume_gives_each_id_once_in_order(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo(latency=0.02)
    (tmp_path / "in.jsonl").write_bytes(jsonl(200))
    out = tmp_path / "out.jsonl"
    args = ["in.jsonl", "-o", str(out), "--endpoint", tgi_endpoint.url, "-j", "4"]
    proc = subprocess.Popen(
        command(*args),
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while (not out.exists() or out.read_bytes().count(b"\n") < 60) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = results(out.read_bytes())
    assert 60 <= len(before) < 200
    assert [r["id"] for r in before] == [f"q{i:03}" for i in range(len(before))]  # a prefix, in order
    with out.open("ab") as fh:
        fh.write(b'{"id": "q0')  # as if the machine had lost power mid-write
    posts_before = len(tgi_endpoint.requests)

    result = run(*args, "--resume", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert b"discarded a partial last line" in result.stderr
    final = results(out.read_bytes())
    assert [r["id"] for r in final] == [f"q{i:03}" for i in range(200)]
    assert all(r["reply"] == f"echo: question {int(r['id'][1:])}" for r in final)
    assert len(tgi_endpoint.requests) - posts_before == 200 - len(before)  # nothing written is asked again
    assert summary(result.stderr) == (200 - len(before), 200 - len(before), 0)


def test_ctrl_c_exits_130_with_whole_lines_and_resume_finishes(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo(latency=0.05)
    (tmp_path / "in.jsonl").write_bytes(jsonl(100))
    out = tmp_path / "out.jsonl"
    args = ["in.jsonl", "-o", str(out), "--endpoint", tgi_endpoint.url, "-j", "2"]
    proc = subprocess.Popen(
        command(*args), cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while (not out.exists() or out.read_bytes().count(b"\n") < 10) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr and b"interrupted after" in stderr and b"--resume" in stderr
    assert stdout == b""
    before = results(out.read_bytes())
    assert [r["id"] for r in before] == [f"q{i:03}" for i in range(len(before))]
    result = run(*args, "--resume", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in results(out.read_bytes())] == [f"q{i:03}" for i in range(100)]


def test_fail_fast_stops_at_the_first_failure(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo(latency=0.02, fault=lambda message, attempt: 422 if message == "question 5" else None)
    result = run("-", "--endpoint", tgi_endpoint.url, "-j", "4", "--fail-fast", cwd=tmp_path, env=env, input=jsonl(40))
    assert result.returncode == 1, result.stderr
    records = results(result.stdout)
    assert [r["id"] for r in records] == [f"q{i:03}" for i in range(6)]
    assert records[-1]["error"]["kind"] == "rejected"
    assert len(tgi_endpoint.requests) < 40


def test_rejected_credentials_stop_the_batch_with_their_exit_code(tgi_endpoint, tmp_path, env):
    tgi_endpoint.error(401, "Invalid token")
    result = run("-", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=jsonl(50))
    assert result.returncode == 4
    assert result.stdout == b""  # the failed item is not recorded: --resume will ask it again
    assert result.stderr.decode().count("falconchat: error:") == 1 and b"Traceback" not in result.stderr
    assert len(tgi_endpoint.requests) <= 16  # stopped, not 50 refusals


def test_an_endpoint_never_reached_stops_the_batch_with_exit_3(closed_port_url, tmp_path, env):
    result = run("-", "--endpoint", closed_port_url, "--retries", "1", cwd=tmp_path, env=env, input=jsonl(50))
    assert result.returncode == 3
    assert result.stdout == b""  # nothing recorded: --resume asks every item once it is up
    assert result.stderr.decode().count("falconchat: error: cannot reach") == 1 and b"Traceback" not in result.stderr


def test_messages_system_and_sampling_per_line_reach_the_endpoint(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()
    lines = [
        {
            "id": 1,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "one"},
            ],
            "temperature": 0.2,
            "max_tokens": 7,
        },
        {"id": "b", "prompt": "two", "system": "Be kind.", "seed": 3, "stop": ["END"], "tag": "kept out"},
        {"prompt": "three"},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    result = run("-", "--endpoint", tgi_endpoint.url, "-j", "1", "-t", "0.5", cwd=tmp_path, env=env, input=data)
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["reply"]) for r in results(result.stdout)] == [
        (1, "echo: one"),
        ("b", "echo: two"),
        (3, "echo: three"),
    ]
    assert "ignoring the field 'tag' (first on line 2)" in result.stderr.decode()
    first, second, third = (r.body for r in tgi_endpoint.requests if r.method == "POST")
    assert first["inputs"] == "System:Be brief.\nUser: Hi\nAssistant: Hello!\nUser: one\nAssistant:"
    assert first["parameters"]["temperature"] == 0.2 and first["parameters"]["max_new_tokens"] == 7
    assert second["inputs"] == "System:Be kind.\nUser: two\nAssistant:"
    assert second["parameters"]["seed"] == 3 and "END" in second["parameters"]["stop"]
    assert second["parameters"]["temperature"] == 0.5  # the command's own value where the line has none
    assert third["inputs"] == "User: three\nAssistant:"


def test_turns_that_do_not_fit_are_left_out_with_a_note_and_a_prompt_that_cannot_is_an_error(
    tgi_endpoint, tmp_path, env
):
    tgi_endpoint.echo()  # no GET /info: the context is 2048 tokens, estimated at ~3 characters each
    long = "word " * 1400
    lines = [
        {
            "id": "trim",
            "messages": [
                {"role": "user", "content": long},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "short"},
            ],
        },
        {"id": "huge", "prompt": long * 2},
        {"id": "fine", "prompt": "fine"},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    result = run("-", "--endpoint", tgi_endpoint.url, "--max-new-tokens", "100", cwd=tmp_path, env=env, input=data)
    assert result.returncode == 1
    trim, huge, fine = results(result.stdout)
    assert trim["reply"] == "echo: short" and trim["notes"] == ["left out the 1 oldest turn to fit the model's context"]
    assert huge["error"]["kind"] == "input" and huge["attempts"] == 1
    assert fine["reply"] == "echo: fine"
    sent = [r.body["inputs"] for r in tgi_endpoint.requests if r.method == "POST"]
    assert sorted(sent) == ["User: fine\nAssistant:", "User: short\nAssistant:"]  # the long turn was left out


BAD_INPUT = (
    "\n".join(
        [
            '{"id": "a", "prompt": "fine"}',
            '{"id": "b", "prompt": ',
            '{"id": "c"}',
            '{"id": "a", "prompt": "again"}',
            '{"id": "d", "prompt": "x", "temperature": "hot"}',
            "",
            '{"id": "e", "messages": [{"role": "assistant", "content": "x"}]}',
            '{"id": "f", "prompt": "also fine"}',
        ]
    )
    + "\n"
)


def test_bad_lines_are_reported_by_number_and_the_rest_runs(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()
    result = run("-", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=BAD_INPUT.encode())
    assert result.returncode == 1
    assert [r["id"] for r in results(result.stdout)] == ["a", "f"]
    err = result.stderr.decode()
    for number, says in [
        (2, "not JSON"),
        (3, '"prompt" or "messages"'),
        (4, "already used on line 1"),
        (5, "temperature"),
        (7, "alternate user and assistant"),
    ]:
        assert re.search(rf"^falconchat: line {number}: .*{re.escape(says)}", err, re.M), err
    assert "line 6" not in err  # a blank line is not an error


def test_strict_refuses_the_whole_file_before_anything_runs(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()
    out = tmp_path / "out.jsonl"
    result = run(
        "-", "-o", str(out), "--strict", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=BAD_INPUT.encode()
    )
    assert result.returncode == 2
    assert "line 2:" in result.stderr.decode() and "--strict" in result.stderr.decode().splitlines()[-1]
    assert tgi_endpoint.requests == [] and not out.exists()


def test_existing_output_needs_resume_and_resume_needs_output(tmp_path, env):
    (tmp_path / "out.jsonl").write_text('{"id": 1, "reply": "x"}\n')
    refused = run("-", "-o", "out.jsonl", cwd=tmp_path, env=env, input=b"hello\n")
    assert refused.returncode == 2 and b"--resume" in refused.stderr
    assert (tmp_path / "out.jsonl").read_text() == '{"id": 1, "reply": "x"}\n'
    no_output = run("--resume", "-", cwd=tmp_path, env=env, input=b"hello\n")
    assert no_output.returncode == 2 and b"-o OUTPUT" in no_output.stderr


def test_progress_bar_on_a_terminal_only(tgi_endpoint, tmp_path, env):
    pexpect = pytest.importorskip("pexpect")
    tgi_endpoint.echo(latency=0.1)
    (tmp_path / "in.jsonl").write_bytes(jsonl(30))
    child = pexpect.spawn(
        command()[0],
        [*command("in.jsonl", "-o", "out.jsonl", "--endpoint", tgi_endpoint.url, "-j", "2")[1:]],
        cwd=str(tmp_path),
        env=env,
        timeout=60,
        dimensions=(24, 160),
    )
    child.expect("in flight")
    child.expect("falconchat batch: 30 items: 30 answered, 0 failed")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert len(results((tmp_path / "out.jsonl").read_bytes())) == 30


# ---- the bundled model and the real endpoint -----------------------------------------------


def test_plain_lines_on_the_bundled_model_decoded_together_give_the_one_at_a_time_replies(tmp_path, env):
    questions = b"What is the capital of France?\n\nName a colour.\nWrite a haiku about rain.\nList three fruits.\n"
    replies = {}
    for jobs in ("1", "4"):
        result = run(
            "-j", jobs, "-t", "0", "--max-new-tokens", "24", cwd=tmp_path, env=env, quick=False, input=questions
        )
        assert result.returncode == 0, result.stderr
        records = results(result.stdout)
        assert [r["id"] for r in records] == [1, 3, 4, 5]  # plain lines: the line number is the id
        assert all(r["reply"].strip() and r["completion_tokens"] <= 24 for r in records)
        replies[jobs] = [r["reply"] for r in records]
    assert replies["4"] == replies["1"]


@pytest.fixture
def served(tmp_path, env):
    """`falconchat serve --port 0` (the bundled model) with a short queue, so a batch overloads it."""
    log = tmp_path / "serve.log"  # a file, not a pipe: one log line per request would fill a pipe
    # One llama.cpp thread: on a busy 2-core machine two threads spin against each other (2-3x slower).
    serve_env = {**env, "FALCONCHAT_THREADS": "1"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "falconchat", "serve", "--port", "0", "--max-waiting", "4", "--parallel", "8"],
            cwd=tmp_path,
            env=serve_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"on (http://127\.0\.0\.1:\d+) \(Ctrl-C to stop\)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield match.group(1), log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_200_prompts_against_the_real_serve(served, tmp_path, env):
    url, log = served
    prompts = b"".join(f"Say the number {i}.\n".encode() for i in range(200))
    out = tmp_path / "out.jsonl"
    # 16 in flight against 8 decoded together + 4 waiting: the endpoint answers 429, batch retries.
    result = run(
        "-",
        "-o",
        str(out),
        "--endpoint",
        url,
        "-j",
        "16",
        "-t",
        "0",
        "--max-new-tokens",
        "4",
        cwd=tmp_path,
        env=env,
        input=prompts,
        quick=False,
        timeout=900,
    )  # a busy 2-core machine is slow
    assert result.returncode == 0, result.stderr
    records = results(out.read_bytes())
    assert [r["id"] for r in records] == list(range(1, 201))
    assert all("error" not in r and r["completion_tokens"] <= 4 for r in records)
    assert summary(result.stderr) == (200, 200, 0)
    print(f"{log.read_text().count(' 429 ')} requests answered 429 and retried")

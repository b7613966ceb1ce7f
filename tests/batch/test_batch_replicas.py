"""`falconchat batch --endpoint A --endpoint B …`: several replicas of one model, as real
processes against scripted TGI endpoints over real HTTP (how requests were spread, a replica
dying mid-run, replicas that disagree, bad flags); and the pool's rules with a fake clock."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_batch import jsonl, results, run, summary

from falconchat.batch.replicas import COOL_S, Pool, Replica
from falconchat.errors import Overloaded, Unreachable, UsageError
from processes import isolated_env
from tgi_endpoint import TgiEndpoint, refused_url


@pytest.fixture
def env(tmp_path):
    return isolated_env(tmp_path)


@pytest.fixture
def replicas():
    endpoints = [TgiEndpoint().__enter__() for _ in range(3)]
    yield endpoints
    for endpoint in endpoints:
        endpoint.close()


def posts(endpoint: TgiEndpoint) -> int:
    return sum(1 for r in endpoint.requests if r.method == "POST")


def endpoint_args(endpoints) -> list[str]:
    return [arg for endpoint in endpoints for arg in ("--endpoint", endpoint.url)]


@pytest.mark.process
def test_round_robin_gives_each_replica_its_turn_and_stats_count_them(replicas, tmp_path, env):
    for endpoint in replicas:
        endpoint.echo(latency=0.01)
    args = ("-", "-o", "out.jsonl", "--policy", "round-robin", "--stats", "stats.json", "-j", "6")
    result = run(*args, *endpoint_args(replicas), cwd=tmp_path, env=env, input=jsonl(60))
    assert result.returncode == 0, result.stderr
    records = results((tmp_path / "out.jsonl").read_bytes())
    assert [r["id"] for r in records] == [f"q{i:03}" for i in range(60)]
    assert all(r["reply"] == f"echo: question {i}" for i, r in enumerate(records))
    assert [posts(e) for e in replicas] == [20, 20, 20]
    assert all(e.gets and e.gets[0].path == "/info" for e in replicas)  # each probed
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [r["requests"] for r in stats["replicas"]] == [20, 20, 20]
    assert [r["endpoint"] for r in stats["replicas"]] == [e.url for e in replicas]
    assert sum(r["tokens"] for r in stats["replicas"]) == stats["tokens"] > 0
    stderr = result.stderr.decode()
    assert all(f"{e.url}: 20 requests (33%)" in stderr for e in replicas), stderr


@pytest.mark.process
def test_least_busy_sends_a_slow_replica_fewer_requests_than_its_turn(replicas, tmp_path, env):
    slow, fast = replicas[0], replicas[1:]
    slow.echo(latency=1.0)  # one request here lasts as long as dozens on the others
    for endpoint in fast:
        endpoint.echo(latency=0.01)
    result = run("-", "-o", "out.jsonl", "-j", "3", *endpoint_args(replicas), cwd=tmp_path, env=env, input=jsonl(60))
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in results((tmp_path / "out.jsonl").read_bytes())] == [f"q{i:03}" for i in range(60)]
    assert sum(posts(e) for e in replicas) == 60
    assert posts(slow) < 20 and all(posts(e) > 20 for e in fast)  # round-robin would give each 20


@pytest.mark.process
def test_a_replica_that_dies_mid_run_loses_nothing_and_writes_nothing_twice(replicas, tmp_path, env):
    dying = replicas[1]
    for endpoint in replicas:
        endpoint.echo(latency=0.02)
    # From its 6th request on, the dying replica accepts and never answers; once the others have
    # answered 20, it goes away: those held requests are dropped and connections are refused.
    dying.echo(latency=0.02, fault=lambda message, attempt: "hang" if posts(dying) > 5 else None)

    def kill() -> None:
        while posts(replicas[0]) + posts(replicas[2]) < 20:
            time.sleep(0.01)
        dying.close()

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    args = ("-", "-o", "out.jsonl", "--stats", "stats.json", "-j", "9", "--timeout", "60")
    result = run(*args, *endpoint_args(replicas), cwd=tmp_path, env=env, input=jsonl(90))
    killer.join(5)
    assert result.returncode == 0, result.stderr
    records = results((tmp_path / "out.jsonl").read_bytes())
    assert [r["id"] for r in records] == [f"q{i:03}" for i in range(90)]  # each once, in order
    assert all(r["reply"] == f"echo: question {i}" for i, r in enumerate(records))  # every one answered
    assert posts(dying) > 5  # it held requests when it died
    moved = [r for r in records if r["attempts"] > 1]
    assert moved  # those were answered elsewhere
    stats = json.loads((tmp_path / "stats.json").read_text())["replicas"]
    assert stats[1]["errors"] >= 1 and stats[1]["cooled_down_s"] > 0
    assert f"{dying.url} failed" in result.stderr.decode()
    assert summary(result.stderr) == (90, 90, 0)


@pytest.mark.process
def test_a_request_an_overloaded_replica_turns_away_goes_to_another_at_once(replicas, tmp_path, env):
    """Neither the replica's client (its own retries, with backoff) nor the pool (least-busy:
    the replica that just failed has the fewest in flight) sends a request back to the replica
    that turned it away while another is healthy. Before, the first item went to the overloaded
    replica 12 times (4 tries, 3 times over) before it was cooled down."""
    busy = replicas[0]
    seen: list[str] = []  # the messages the overloaded replica was sent

    def overloaded(message: str, attempt: int) -> int:
        seen.append(message)
        return 429

    busy.echo(latency=0.01, fault=overloaded)
    for endpoint in replicas[1:]:
        endpoint.echo(latency=0.01)
    result = run("-", "-o", "out.jsonl", "-j", "3", *endpoint_args(replicas), cwd=tmp_path, env=env, input=jsonl(30))
    assert result.returncode == 0, result.stderr
    records = results((tmp_path / "out.jsonl").read_bytes())
    assert [r["reply"] for r in records] == [f"echo: question {i}" for i in range(30)]
    assert seen, "the overloaded replica was never asked"
    assert len(set(seen)) == len(seen), f"a request was tried again on the replica that turned it away: {seen}"


@pytest.mark.process
def test_replicas_that_disagree_on_the_model_are_refused_in_one_line(replicas, tmp_path, env):
    replicas[2].model_id = "other/model"
    result = run("-", *endpoint_args(replicas), cwd=tmp_path, env=env, input=jsonl(3))
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("falconchat: error: the replicas disagree on the model: ")
    assert "'other/model'" in lines[0] and replicas[2].url in lines[0] and replicas[0].url in lines[0]
    assert not any(posts(e) for e in replicas)


@pytest.mark.process
def test_an_unreachable_replica_at_start_is_left_out_with_a_note(replicas, tmp_path, env):
    for endpoint in replicas[:2]:
        endpoint.echo()
    down = refused_url()
    urls = ["--endpoint", replicas[0].url, "--endpoint", down, "--endpoint", replicas[1].url]
    result = run("-", "--policy", "round-robin", *urls, cwd=tmp_path, env=env, input=jsonl(10))
    assert result.returncode == 0, result.stderr
    assert len(results(result.stdout)) == 10
    assert f"cannot reach {down}: going on with the other 2 replica(s)" in result.stderr.decode()
    assert [posts(e) for e in replicas[:2]] == [5, 5]


@pytest.mark.process
@pytest.mark.parametrize(
    "args, says",
    [
        (("--policy", "least_busy"), "--policy must be least-busy or round-robin, not 'least_busy'"),
        (("--endpoint", "http://127.0.0.1:9", "--endpoint", "http://127.0.0.1:9/"), "is given twice"),
    ],
)
def test_bad_replica_flags_are_one_line_and_exit_2(tmp_path, env, args, says):
    result = run("-", *args, cwd=tmp_path, env=env, input=jsonl(2))
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines


@pytest.mark.process
def test_ask_with_endpoint_repeated_fails_over_to_the_next_replica(replicas, tmp_path, env):
    replicas[0].echo()
    down = refused_url()
    result = subprocess.run(
        [sys.executable, "-m", "falconchat", "ask", "--endpoint", down, "--endpoint", replicas[0].url, "hi"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "echo: hi"


# ---- the pool's rules, with a fake clock ---------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool(n: int, policy: str = "least-busy") -> tuple[Pool, Clock]:
    clock = Clock()
    return Pool([Replica(spec=None, url=f"r{i}") for i in range(n)], policy, clock), clock


def test_least_busy_picks_the_replica_with_fewest_in_flight():
    p, _ = pool(3)
    picks = [p.pick().url for _ in range(6)]
    assert sorted(picks) == ["r0", "r0", "r1", "r1", "r2", "r2"]
    p.succeeded(p.replicas[1], 5)
    assert p.pick().url == "r1"


def test_a_refused_connection_cools_a_replica_down_then_lets_one_request_probe_it():
    p, clock = pool(2)
    r0 = p.pick()
    assert r0.url == "r0"
    assert p.failed(r0, Unreachable("refused"), its_own=True) is True
    assert {p.pick().url for _ in range(4)} == {"r1"}  # left out
    clock.now += COOL_S + 0.1
    probe = p.pick()
    assert probe.url == "r0"  # back, one request at a time
    assert all(p.pick().url == "r1" for _ in range(3))
    p.succeeded(probe, 1)
    assert not probe.probing and probe.url in {p.pick().url for _ in range(10)}


def test_overload_cools_down_after_three_in_a_row_and_cooling_doubles_while_it_keeps_failing():
    p, clock = pool(2, "round-robin")
    r0 = p.replicas[0]
    for expected in (False, False, True):
        r0.in_flight += 1
        assert p.failed(r0, Overloaded("429"), its_own=True) is expected
    assert r0.cool_s == COOL_S
    clock.now += COOL_S + 0.1
    r0.in_flight += 1
    assert p.failed(r0, Overloaded("429"), its_own=True) is True  # the probe failed
    assert r0.cool_s == 2 * COOL_S and r0.cooled_total_s == 3 * COOL_S


def test_a_request_s_own_fault_does_not_cool_its_replica():
    p, _ = pool(1)
    r0 = p.replicas[0]
    for _ in range(5):
        r0.in_flight += 1
        assert p.failed(r0, Unreachable("x"), its_own=False) is False
    assert r0.errors == 5 and r0.cooled_until == 0


def test_a_policy_typo_is_a_usage_error():
    with pytest.raises(UsageError, match="least-busy or round-robin"):
        Pool([], "fastest")


# ---- real servers: two `falconchat serve` processes as replicas -----------------------------


@contextlib.contextmanager
def serve_process(directory, env):
    """`falconchat serve --port 0` (the bundled model, one thread: the machine is shared)."""
    directory.mkdir()
    log = directory / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "falconchat", "serve", "--port", "0", "--parallel", "4"],
            cwd=directory,
            env={**env, "FALCONCHAT_THREADS": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 90
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


@pytest.mark.process
def test_an_openai_batch_file_over_two_real_falconchat_serve_replicas(tmp_path, env):
    from test_batch_openai import VALIDATOR, chat, request
    from test_batch_openai import jsonl as openai_jsonl
    from test_batch_openai import rows as openai_rows

    lines = [chat(f"c{i}", f"Say the number {i}.", max_tokens=4, temperature=0) for i in range(10)]
    lines += [
        request(f"p{i}", {"prompt": f"Count to {i}", "max_tokens": 4, "temperature": 0}, "/v1/completions")
        for i in range(2)
    ]
    (tmp_path / "job.jsonl").write_bytes(openai_jsonl(*lines))
    with serve_process(tmp_path / "a", env) as (url_a, log_a), serve_process(tmp_path / "b", env) as (url_b, log_b):
        result = run(
            "job.jsonl", "-o", "out.jsonl", "--policy", "round-robin", "-j", "4",
            "--endpoint", url_a, "--endpoint", url_b,
            cwd=tmp_path, env=env, quick=False, timeout=600,
        )  # fmt: skip
        served = [len(re.findall(r"^POST /\S* 200 ", log.read_text(), re.M)) for log in (log_a, log_b)]
    assert result.returncode == 0, result.stderr
    found = openai_rows((tmp_path / "out.jsonl").read_bytes())
    assert [r["custom_id"] for r in found] == [f"c{i}" for i in range(10)] + ["p0", "p1"]
    assert all(r["response"]["status_code"] == 200 and not list(VALIDATOR.iter_errors(r)) for r in found)
    assert all(r["response"]["body"]["usage"]["completion_tokens"] <= 4 for r in found)
    assert summary(result.stderr) == (12, 12, 0)
    assert (
        f"{url_a}: 6 requests (50%)" in result.stderr.decode()
        and f"{url_b}: 6 requests (50%)" in result.stderr.decode()
    )
    assert served == [6, 6], (log_a.read_text()[-2000:], served)


@pytest.mark.process
def test_a_config_entry_with_endpoints_spreads_batch_over_them(replicas, tmp_path, env):
    for endpoint in replicas[:2]:
        endpoint.echo()
    (tmp_path / "models.toml").write_text(
        f'[models.fleet]\nendpoints = ["{replicas[0].url}", "{replicas[1].url}"]\n', encoding="utf-8"
    )
    args = ("-", "--config", "models.toml", "-m", "fleet", "--policy", "round-robin")
    result = run(*args, cwd=tmp_path, env=env, input=jsonl(10))
    assert result.returncode == 0, result.stderr
    assert [r["reply"] for r in results(result.stdout)] == [f"echo: question {i}" for i in range(10)]
    assert [posts(e) for e in replicas[:2]] == [5, 5]


@pytest.mark.process
@pytest.mark.parametrize(
    "entry, says",
    [
        ('endpoints = "http://a"', "endpoints must be a list of URLs"),
        ('endpoints = ["http://a"]\nendpoint = "http://b"', "endpoint and endpoints name the same thing"),
    ],
)
def test_a_bad_endpoints_entry_is_one_line_and_exit_2(tmp_path, env, entry, says):
    (tmp_path / "models.toml").write_text(f"[models.fleet]\n{entry}\n", encoding="utf-8")
    result = run("-", "--config", "models.toml", "-m", "fleet", cwd=tmp_path, env=env, input=jsonl(2))
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines


@pytest.mark.process
def test_ask_on_an_entry_with_endpoints_moves_to_the_next_replica_when_one_is_down(replicas, tmp_path, env):
    replicas[1].echo()
    replicas[2].error(503, "overloaded", "overloaded")
    down = refused_url()
    (tmp_path / "models.toml").write_text(
        f'[models.fleet]\nendpoints = ["{down}", "{replicas[2].url}", "{replicas[1].url}"]\n', encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import falconchat.backends.tgi as t; t.BACKOFF_S = 0.001; from falconchat.cli.app import main; main()",
         "ask", "--config", "models.toml", "-m", "fleet", "hello there"],
        cwd=tmp_path, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "echo: hello there"
    assert posts(replicas[2]) >= 1 and posts(replicas[1]) == 1  # the 503 replica was tried, then the next


@pytest.mark.process
def test_a_chat_on_an_entry_with_endpoints_stays_on_one_replica(replicas, tmp_path, env):
    for endpoint in replicas[:2]:
        endpoint.echo()
    (tmp_path / "models.toml").write_text(
        f'[models.fleet]\nendpoints = ["{replicas[0].url}", "{replicas[1].url}"]\n', encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-m", "falconchat", "--config", "models.toml", "-m", "fleet"],
        cwd=tmp_path, env=env, capture_output=True, input=b"first\nsecond\nthird\n/exit\n", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert all(f"echo: {word}" in out for word in ("first", "second", "third")), out
    assert [posts(e) for e in replicas[:2]] == [3, 0]  # the whole conversation on the first


@pytest.mark.process
def test_a_batch_over_falconchat_serve_and_llama_cpp_pythons_server_answers_each_item_once(tmp_path, env):
    """Issue 27: replicas of the bundled model behind two different servers — `falconchat serve`
    (probed as TGI's API) and llama-cpp-python's OpenAI-compatible server (started as
    tests/peers.py starts it: no repacked weights, which SIGILL on AMX CPUs), both naming the
    model `smollm2` — take one OpenAI batch file between them: every item answered once, in order,
    and each server answered some."""
    pytest.importorskip("llama_cpp.server")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "backends"))
    from test_batch_openai import chat, rows
    from test_batch_openai import jsonl as openai_jsonl
    from test_openai import KEY, free_port, start_server

    (tmp_path / "job.jsonl").write_bytes(
        openai_jsonl(*(chat(f"c{i}", f"Say the number {i}.", max_tokens=4, temperature=0) for i in range(8)))
    )
    port = free_port()
    llama = start_server(port)  # --model_alias smollm2, as falconchat serve names it
    try:
        with serve_process(tmp_path / "serve", env) as (url, log):
            result = run(
                "job.jsonl", "-o", "out.jsonl", "--stats", "stats.json", "--policy", "round-robin", "-j", "2",
                "--endpoint", url, "--endpoint", f"http://127.0.0.1:{port}",
                cwd=tmp_path, env={**env, "FALCONCHAT_API_KEY": KEY}, quick=False, timeout=600,
            )  # fmt: skip
            served_by_serve = len(re.findall(r"^POST /\S* 200 ", log.read_text(), re.M))
    finally:
        llama.terminate()
        llama.wait(timeout=10)
    assert result.returncode == 0, result.stderr.decode()
    found = rows((tmp_path / "out.jsonl").read_bytes())
    assert [r["custom_id"] for r in found] == [f"c{i}" for i in range(8)]
    assert all(r["response"]["status_code"] == 200 for r in found)
    stats = json.loads((tmp_path / "stats.json").read_text())["replicas"]
    answered = {r["endpoint"]: r["answered"] for r in stats}
    # Each answered some (a request one refuses moves to the other: the share need not be even).
    assert sum(answered.values()) == 8 and min(answered.values()) > 0, stats
    assert served_by_serve == answered[url], (stats, served_by_serve)

"""`batch` over OpenAI-compatible replicas at scale (issue 27): the simulated replicas of `bench`'s
scale rows (bench/replica_sim.py, vLLM's wire format, each its own process) answer every item
once, and the client keeps its keep-alive connections instead of opening one per request."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from falconchat.bench.scale_rows import openai_job
from processes import falconchat, isolated_env

pytestmark = pytest.mark.process


def start_replica(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "falconchat.bench.replica_sim", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    return proc, line.split()[-1]


def stop(proc: subprocess.Popen) -> tuple[int, int]:
    """(requests, connections) the replica served."""
    proc.terminate()
    said, _ = proc.communicate(timeout=10)
    match = re.search(r"served (\d+) requests on (\d+) connections", said)
    assert match, said
    return int(match[1]), int(match[2])


def test_a_batch_over_two_replicas_answers_each_item_once_on_kept_alive_connections(tmp_path):
    """Each streamed reply is read to its end, so its connection goes back to the pool, and the
    workers share one client per replica: 60 requests on a handful of connections. The old code
    closed every response before its `data: [DONE]` (the connection dropped) and built a client
    (a pool, a TLS context) per worker and replica: a connection per request."""
    replicas = [start_replica("--rate", "0", "--tokens", "4") for _ in range(2)]
    try:
        (tmp_path / "job.jsonl").write_bytes(openai_job(60, 4))
        args = ["batch", "job.jsonl", "-o", "out.jsonl", "-j", "4"]
        args += [arg for _, url in replicas for arg in ("--endpoint", url)]
        result = falconchat(*args, cwd=tmp_path, env=isolated_env(tmp_path))
    finally:
        served = [stop(proc) for proc, _ in replicas]
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["custom_id"] for row in rows] == [f"request-{i}" for i in range(60)]
    assert all(row["error"] is None and row["response"]["status_code"] == 200 for row in rows)
    assert sum(requests for requests, _ in served) == 60  # completions: every item once
    # At most one connection per worker and replica, and each replica's probe.
    assert sum(connections for _, connections in served) <= 4 * 2 + 2, served

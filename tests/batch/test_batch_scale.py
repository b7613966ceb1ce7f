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


def test_logprobs_asked_for_come_back_in_the_openai_rows_in_each_apis_shape(tmp_path):
    """Issue 27 item 1: `logprobs` (and `top_logprobs`) in a request reach the replica, and the
    row carries what it gave in OpenAI's shape — the chat API's `content` list, the completions
    API's parallel lists — valid by docs/batch-openai-row.schema.json and the SDK's types; a
    request that did not ask has null. (Refused as unsupported on the old code.)"""
    from test_batch_openai import chat, jsonl, request, rows

    proc, url = start_replica("--rate", "0", "--tokens", "3")
    lines = [
        chat("with-top", "a question", logprobs=True, top_logprobs=2, max_tokens=3),
        chat("plain", "a question", max_tokens=3),
        request("completion", {"model": "m", "prompt": "Once upon", "logprobs": 1, "max_tokens": 3}, "/v1/completions"),
        chat("bad-top", "a question", top_logprobs=25, logprobs=True),
    ]
    (tmp_path / "job.jsonl").write_bytes(jsonl(*lines))
    try:
        result = falconchat(
            "batch", "job.jsonl", "-o", "out.jsonl", "--endpoint", url, cwd=tmp_path, env=isolated_env(tmp_path)
        )
    finally:
        stop(proc)
    assert result.returncode == 1, result.stderr.decode()  # one line refused: exit 1, the rest answered
    found = {row["custom_id"]: row for row in rows((tmp_path / "out.jsonl").read_bytes())}
    top = found["with-top"]["response"]["body"]["choices"][0]
    tokens = [entry["token"] for entry in top["logprobs"]["content"]]
    assert "".join(tokens).strip() == top["message"]["content"].strip() and len(tokens) == 3
    assert all(len(entry["top_logprobs"]) == 2 and entry["logprob"] <= 0 for entry in top["logprobs"]["content"])
    assert found["plain"]["response"]["body"]["choices"][0]["logprobs"] is None
    completion = found["completion"]["response"]["body"]["choices"][0]["logprobs"]
    assert len(completion["tokens"]) == len(completion["token_logprobs"]) == len(completion["text_offset"]) == 3
    assert all(len(alternatives) == 1 for alternatives in completion["top_logprobs"])
    refused = found["bad-top"]
    assert refused["response"]["status_code"] == 400 and "top_logprobs" in refused["error"]["message"]

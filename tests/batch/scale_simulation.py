"""How far `batch` scales over replicas, by simulation (the figures in docs/scale.md).

Not a test (timings are never asserted): run it by hand, on a quiet machine,

    .venv/bin/python tests/batch/scale_simulation.py

Each scripted TGI replica answers at most SLOTS requests at once, each after LATENCY_S (a
continuous-batching server's shape: a fixed number of sequences at a fixed rate). Rows:
4 replicas against 1 with the same -j per replica; one of 4 killed half way; a 10,000-line
OpenAI batch file through 4 instant replicas (falconchat's CPU time per item).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from processes import isolated_env  # noqa: E402
from tgi_endpoint import TgiEndpoint  # noqa: E402

SLOTS = 4
LATENCY_S = 0.2
ITEMS = 160


def openai_file(n: int) -> bytes:
    return b"".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8},
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def batch(tmp: Path, urls: list[str], n: int, j: int) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds of the batch process, and its --stats."""
    (tmp / "job.jsonl").write_bytes(openai_file(n))
    for name in ("out.jsonl", "stats.json"):
        (tmp / name).unlink(missing_ok=True)
    args = [sys.executable, "-m", "falconchat", "batch", "job.jsonl", "-o", "out.jsonl", "--stats", "stats.json"]
    args += ["-j", str(j)] + [a for url in urls for a in ("--endpoint", url)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run(args, cwd=tmp, env=isolated_env(tmp), capture_output=True, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in (tmp / "out.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == [f"r{i}" for i in range(n)]  # every item once, in order
    assert all(r["error"] is None for r in rows)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads((tmp / "stats.json").read_text())


def replicas(n: int, **echo) -> list[TgiEndpoint]:
    endpoints = [TgiEndpoint().__enter__() for _ in range(n)]
    for endpoint in endpoints:
        endpoint.echo(**echo)
    return endpoints


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        one = replicas(1, latency=LATENCY_S, slots=SLOTS)
        # The run's own time (--stats elapsed_s): the process's start and the probes are apart.
        _, _, stats = batch(tmp, [e.url for e in one], ITEMS, SLOTS)
        wall_1 = stats["elapsed_s"]
        four = replicas(4, latency=LATENCY_S, slots=SLOTS)
        _, _, stats = batch(tmp, [e.url for e in four], ITEMS, 4 * SLOTS)
        wall_4 = stats["elapsed_s"]
        ideal = ITEMS / SLOTS * LATENCY_S
        print(f"1 replica  -j {SLOTS}: {ITEMS} items in {wall_1:.2f}s (ideal {ideal:.2f}s)")
        print(f"4 replicas -j {4 * SLOTS}: {ITEMS} items in {wall_4:.2f}s (ideal {ideal / 4:.2f}s)")
        print(f"speed-up: {wall_1 / wall_4:.2f}x (target >= 3.6x)")

        victim = four[1]

        def kill() -> None:  # half way, by the requests the replicas have seen
            while sum(len(e.requests) for e in four) < ITEMS + ITEMS // 2:
                time.sleep(0.005)
            victim.close()

        killer = threading.Thread(target=kill, daemon=True)
        killer.start()
        _, _, stats = batch(tmp, [e.url for e in four], ITEMS, 4 * SLOTS)
        wall_k = stats["elapsed_s"]
        print(
            f"one of 4 killed half way: every item answered once in {wall_k:.2f}s; {wall_4 / wall_k:.2f}x of 4 healthy"
        )
        print("  per replica:", [(r["requests"], r["errors"]) for r in stats["replicas"]])
        for endpoint in one + four:
            if endpoint is not victim:
                endpoint.close()

        fast = replicas(4)
        n = 10_000
        wall, cpu, _ = batch(tmp, [e.url for e in fast], n, 32)
        print(
            f"{n} OpenAI lines through 4 instant replicas: {wall:.1f}s, {cpu:.1f}s CPU: {1000 * cpu / n:.2f} ms per item"
        )
        for endpoint in fast:
            endpoint.close()


if __name__ == "__main__":
    main()

"""`bench` rows for `batch` over several replicas (issue 27), proved by simulation: each replica
is a process of its own (bench/replica_sim.py) speaking vLLM's OpenAI-compatible protocol with
a continuous-batching server's shape — SLOTS sequences at once, each at RATE tokens a second.

- 4 replicas against 1, `-j` SLOTS per replica: items/s of the run (its own time, `--stats`
  elapsed_s: the process's start and the probes are the same for both).
- One of 4 killed (SIGKILL) when half the items are written: every item answered exactly once,
  in input order, and items/s against 4 healthy ones in the same repetition.
- An OpenAI batch file of `cpu_items` lines through 4 replicas that answer at once: the CPU
  falconchat spends per item (its process's user + system time, less a one-line run's: the
  start and the probes), against the CPU the replicas spend per request (a bare asyncio server).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from falconchat.bench.stats import Row, median

SLOTS = 4  # sequences a replica decodes at once
RATE = 100.0  # tokens a second per sequence
TOKENS = 16  # each reply's length: an item holds a slot TOKENS / RATE = 0.16 s
CPU_TOKENS = 16  # the CPU row's replies (from replicas that answer at once)


def rows(bench) -> list[Row]:
    work = bench.work
    folder = Path(tempfile.mkdtemp(prefix="scale-", dir=bench.home))
    job = folder / "job.jsonl"
    job.write_bytes(openai_job(work.scale_items, TOKENS))
    one_rates, four_rates, killed_rates = [], [], []
    bench.say(f"starting 4 simulated replicas ({SLOTS} slots, {RATE:.0f} tokens/s each)")
    with Replicas(4, SLOTS, RATE, TOKENS) as four:

        def rate(urls: list[str]) -> float:
            result = run_batch(bench, folder, job, urls, SLOTS * len(urls))
            return work.scale_items / result.stats["elapsed_s"]

        if work.warm_up:
            rate(four.urls)
        for rep in range(work.scale_reps):
            bench.say(f"{work.scale_items} items on 1 replica and on 4, {rep + 1}/{work.scale_reps}")
            one_rates.append(rate(four.urls[:1]))
            four_rates.append(rate(four.urls))
            bench.say(f"{work.scale_items} items on 4 replicas, one killed half way, {rep + 1}/{work.scale_reps}")
            killed_rates.append(_killed_half_way(bench, folder, job))
    cpu, server_cpu = _cpu_per_item(bench, folder)
    return [
        Row(
            f"batch over 4 replicas, -j {SLOTS} each (items/s; simulated: {SLOTS} slots × {RATE:.0f} tok/s)",
            median(four_rates),
            "items/s",
            f"1 replica, -j {SLOTS}",
            median(one_rates),
            "≥ 3.6 × 1 replica",
        ),
        Row(
            "batch over 4 replicas, one killed half way (items/s; every item answered once)",
            median(killed_rates),
            "items/s",
            "4 healthy replicas",
            median(four_rates),
            "≥ 0.7 × 4 healthy",
        ),
        Row(
            "batch CPU per item, an OpenAI file over 4 replicas (10,000 lines; --quick 1,000)",
            cpu * 1000,
            "ms",
            "the replicas' CPU per request",
            server_cpu * 1000,
            "≤ 1 ms",
        ),
    ]


def openai_job(count: int, tokens: int) -> bytes:
    """An OpenAI batch file (what `vllm run-batch` reads) of `count` chat requests."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"request-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "sim/replica",
                    "messages": [{"role": "user", "content": f"Question {i}: name a river."}],
                    "max_tokens": tokens,
                },
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


class Batch:
    def __init__(self, rows: list[dict], stats: dict, cpu_s: float):
        self.rows = rows
        self.stats = stats
        self.cpu_s = cpu_s  # the batch process's user + system time


def run_batch(bench, folder: Path, job: Path, urls: list[str], jobs: int | None, during=None) -> Batch:
    """`falconchat batch JOB -o … --stats …` over `urls`, as a user runs it; `during(out_path)`,
    if given, runs beside it in a thread. Every row must be an answer, once, in input order."""
    out, stats = folder / "out.jsonl", folder / "stats.json"
    for path in (out, stats):
        path.unlink(missing_ok=True)
    command = [*bench.falconchat, "batch", str(job), "-o", str(out), "--stats", str(stats)]
    command += ["-j", str(jobs)] if jobs else []
    command += [arg for url in urls for arg in ("--endpoint", url)]
    with open(folder / "stderr.txt", "w+b") as stderr:
        proc = subprocess.Popen(
            command, env=bench.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
        helper = threading.Thread(target=during, args=(out,), daemon=True) if during else None
        if helper:
            helper.start()
        _, status, usage = os.wait4(proc.pid, 0)  # its own CPU time, which Popen.wait does not give
        proc.returncode = os.waitstatus_to_exitcode(status)
        if helper:
            helper.join(10)
        stderr.seek(0)
        said = stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"falconchat batch exited {proc.returncode}: {said.strip()[-300:]}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    wanted = [json.loads(line)["custom_id"] for line in job.read_text().splitlines()]
    if [row["custom_id"] for row in rows] != wanted:
        raise RuntimeError("batch did not write every item exactly once, in input order")
    failed = [row for row in rows if row["error"] is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} items failed, such as: {failed[0]['error']}")
    return Batch(rows, json.loads(stats.read_text()), usage.ru_utime + usage.ru_stime)


def _killed_half_way(bench, folder: Path, job: Path) -> float:
    """Items/s over 4 fresh replicas, one of them killed when half the items are written."""
    items = bench.work.scale_items
    with Replicas(4, SLOTS, RATE, TOKENS) as four:
        victim = four.procs[1]

        def kill_half_way(out: Path) -> None:
            while victim.poll() is None:
                if out.exists() and out.read_bytes().count(b"\n") >= items // 2:
                    victim.kill()  # SIGKILL: its connections reset, its port refuses
                    return
                time.sleep(0.005)

        result = run_batch(bench, folder, job, four.urls, SLOTS * 4, during=kill_half_way)
        if victim.poll() is None:
            raise RuntimeError("the batch ended before the replica was killed")
        served = {r["endpoint"]: r["answered"] for r in result.stats["replicas"]}
        if served.get(four.urls[1], 0) >= items:
            raise RuntimeError("the killed replica answered everything")
    return items / result.stats["elapsed_s"]


def _cpu_per_item(bench, folder: Path) -> tuple[float, float]:
    """(falconchat's CPU seconds per item, the replicas' per request), medians over repetitions."""
    count = bench.work.cpu_items
    big, small = folder / "cpu-job.jsonl", folder / "one-job.jsonl"
    big.write_bytes(openai_job(count, CPU_TOKENS))
    small.write_bytes(openai_job(1, CPU_TOKENS))
    per_item = []
    bench.say(f"a {count:,}-line OpenAI file over 4 replicas that answer at once")
    with Replicas(4, SLOTS * 8, 0.0, CPU_TOKENS) as four:
        if bench.work.warm_up:
            run_batch(bench, folder, small, four.urls, None)
        for rep in range(bench.work.scale_reps):
            bench.say(f"a {count:,}-line OpenAI file over 4 replicas, {rep + 1}/{bench.work.scale_reps}")
            fixed = run_batch(bench, folder, small, four.urls, None).cpu_s
            whole = run_batch(bench, folder, big, four.urls, None)
            per_item.append((whole.cpu_s - fixed) / (count - 1))
            bench.say(
                f"{whole.cpu_s:.2f} s of CPU for {count:,} items ({1000 * whole.cpu_s / count:.2f} ms each with the "
                f"process's start), {fixed:.2f} s for one; {count / whole.stats['elapsed_s']:.0f} items/s"
            )
    served = four.served()
    return median(per_item), sum(cpu for _, cpu in served) / max(1, sum(n for n, _ in served))


SERVED = re.compile(r"served (\d+) requests on \d+ connections, ([\d.]+) s of CPU")


class Replicas:
    """`count` simulated replicas (bench/replica_sim.py), each its own process, for a block."""

    def __init__(self, count: int, slots: int, rate: float, tokens: int):
        self.args = ["--slots", str(slots), "--rate", str(rate), "--tokens", str(tokens)]
        self.count = count
        self.procs: list[subprocess.Popen] = []
        self.urls: list[str] = []
        self._said: list[str] = []

    def __enter__(self) -> Replicas:
        try:
            for _ in range(self.count):
                proc = subprocess.Popen(
                    [sys.executable, "-m", "falconchat.bench.replica_sim", *self.args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                self.procs.append(proc)
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line.startswith("listening on "):
                    raise RuntimeError(f"a simulated replica did not start: {line.strip()!r}")
                self.urls.append(line.split()[-1])
        except BaseException:
            self.__exit__()
            raise
        return self

    def served(self) -> list[tuple[int, float]]:
        """Stop them; (requests, CPU seconds) of each one that was not killed."""
        self.__exit__()
        return [(int(m[1]), float(m[2])) for m in (SERVED.search(s) for s in self._said) if m]

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                said, _ = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                said, _ = proc.communicate()
            self._said.append(said or "")
        self.procs = []

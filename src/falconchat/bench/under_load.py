"""`bench` rows for a busy computer: decode tokens/s of the bundled model while busy-loop
processes compete for the CPUs, for the default thread policy and the alternatives, all
measured interleaved in one run (so a machine shared with other work shifts them alike).

The targets (issue 14): with one busy loop per core but one, the default policy decodes
at ≥ 0.8 × the best single-thread figure under the same load and ≥ 0.45 × its own idle figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from falconchat.backends.base import DecodeThreads, InProcessModel
from falconchat.backends.threads import ThreadPolicy, choose_threads, usable_cores
from falconchat.bench import probes
from falconchat.bench.stats import Row, median
from falconchat.types import SamplingParams, TextDelta

# Bounded: a busy loop ends by itself after `limit` seconds even if bench is killed.
BUSY_LOOP = "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"
BUSY_LIMIT_S = 900
SETTLE_S = 1.0  # the competitors run before a reply starts, as when a build is already going
# Counting goes on: every reply decodes its max_new_tokens (no early end to skew the rate).
COUNTING = "".join(f"{n}, " for n in range(1, 21)).rstrip()
REPL_MESSAGE = "Count from one to one thousand, one number per line."  # a chat reply that runs to the limit


@contextmanager
def busy_loops(count: int, limit_s: float = BUSY_LIMIT_S) -> Iterator[list[subprocess.Popen]]:
    """`count` processes spinning on a CPU each; always killed on the way out."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", BUSY_LOOP.format(limit=limit_s)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(SETTLE_S if count else 0)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


class LoadAverageAtStart:
    """The candidate that reads the 1-minute load average once, as a reply starts."""

    fixed: int | None = None
    adapts = False

    def __init__(self, cores: int):
        self.cores = cores

    def threads(self) -> int:
        return choose_threads(self.cores, os.getloadavg()[0])

    def due(self) -> bool:
        return False


def policies(cores: int) -> dict[str, DecodeThreads]:
    """The candidates, by name: the default first, one thread (the baseline under load) last."""
    count = os.cpu_count() or 1
    return {
        "default (free cores, measured)": ThreadPolicy(cores=cores),
        f"all cores ({count})": ThreadPolicy(fixed=count),
        f"cores − 1 ({max(1, count - 1)})": ThreadPolicy(fixed=max(1, count - 1)),
        f"physical cores ({cores})": ThreadPolicy(fixed=cores),
        "load average at start": LoadAverageAtStart(cores),
        "1 thread": ThreadPolicy(fixed=1),
    }


# A policy that stalls under load (all cores with a competitor: under 1 token/s) would take
# minutes to reach `tokens`; its rate is read over this long instead.
MEASURE_CAP_S = 8.0


def decode_rate(backend: InProcessModel, tokens: int, cap_s: float = MEASURE_CAP_S) -> float:
    """Tokens/s after the first token of a greedy reply that runs to `tokens` (or `cap_s`)."""
    stream = backend.generate(COUNTING, SamplingParams(temperature=0, max_new_tokens=tokens))
    first_at = last_at = None
    count = 0
    try:
        for event in stream:
            if not isinstance(event, TextDelta):
                continue
            last_at = time.perf_counter()
            if first_at is None:
                first_at = last_at
                continue
            count += 1
            if last_at - first_at >= cap_s:
                break
    finally:
        stream.close()
    if first_at is None or last_at is None or last_at <= first_at:
        return 0.0
    return count / (last_at - first_at)


def measure(
    backend: InProcessModel,
    loads: list[int],
    reps: int,
    tokens: int,
    step=lambda what: None,
    cap_s: float = MEASURE_CAP_S,
) -> dict[tuple[int, str], float]:
    """Median decode tokens/s per (busy loops, policy), interleaved: each repetition runs every
    load and, under it, every policy (in a rotated order); each rate read over at most `cap_s`."""
    cores = usable_cores()
    candidates = policies(cores)
    names = list(candidates)
    rates: dict[tuple[int, str], list[float]] = {}
    original = backend.thread_policy
    try:
        for rep in range(reps):
            for load in loads:
                step(f"{load} busy loop(s), every thread policy, repetition {rep + 1}/{reps}")
                with busy_loops(load):
                    order = names[rep % len(names) :] + names[: rep % len(names)]
                    for name in order:
                        backend.thread_policy = candidates[name]
                        rates.setdefault((load, name), []).append(decode_rate(backend, tokens, cap_s))
    finally:
        backend.thread_policy = original
    return {key: median(values) for key, values in rates.items()}


def rows(bench) -> list[Row]:
    cores = usable_cores()
    loaded = max(1, (os.cpu_count() or 1) - 1)  # one busy loop per core but one
    loads = sorted({0, loaded, os.cpu_count() or 1})  # every run, quick too: the same rows
    work = bench.work
    # The bench's own single-sequence backend: measure() puts its thread policy back after.
    backend = bench._backend()
    decode_rate(backend, 8)  # warm-up
    figures = measure(backend, loads, work.load_reps, work.load_tokens, bench.say, work.cap_s)
    default, single = "default (free cores, measured)", "1 thread"
    result = [
        Row(
            f"decode tokens/s, {loaded} busy loop(s) on {os.cpu_count()} CPUs (default threads)",
            figures[(loaded, default)],
            "tok/s",
            "the same, idle",
            figures[(0, default)],
            "≥ 0.45 × idle",
        ),
        Row(
            f"decode tokens/s, {loaded} busy loop(s) (default threads) vs 1 thread",
            figures[(loaded, default)],
            "tok/s",
            "1 thread under the same load",
            figures[(loaded, single)],
            "≥ 0.8 × 1 thread",
        ),
    ]
    result.append(_repl_row(bench, loaded, work.load_tokens))
    for load in loads:
        for name in policies(cores):
            if name == default:
                continue
            result.append(
                Row(
                    f"decode tokens/s, {load} busy loop(s): {name}",
                    figures[(load, name)],
                    "tok/s",
                    "default threads, same load",
                    figures[(load, default)],
                    "—",
                )
            )
    return result


def _repl_row(bench, loaded: int, tokens: int) -> Row:
    """The REPL's own work while it streams (Markdown, toolbar, prompt) must not compete with the
    engine: a REPL reply on a terminal against `ask` piped, both under the same busy loops."""

    bench.say(f"a REPL reply and ask piped, {loaded} busy loop(s)")
    settings = ["--verbose", "-t", "0", "--max-new-tokens", str(tokens)]
    repl, piped = [], []
    with busy_loops(loaded):
        for _ in range(bench.work.load_reps):
            repl.append(probes.repl_reply_rate([*bench.falconchat, *settings], bench.env, REPL_MESSAGE))
            ask = [*bench.falconchat, "ask", *settings, REPL_MESSAGE]
            piped.append(probes.decode_rate(probes.run_piped(ask, bench.env)))
    return Row(
        f"REPL reply decode tokens/s, {loaded} busy loop(s) (terminal answering CPR: toolbar drawn)",
        median(repl),
        "tok/s",
        "ask piped, same load",
        median(piped),
        "≥ 0.9 × ask piped",
    )

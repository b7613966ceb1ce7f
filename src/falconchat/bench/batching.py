"""`bench` rows for continuous batching: `batch` and `serve` on the bundled model,
each against the one-at-a-time path measured in the same run."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from contextlib import closing

from falconchat.bench.stats import Row, median, p95
from falconchat.types import SamplingParams, TextDelta

TOPICS = [
    "the ocean",
    "ancient Rome",
    "space travel",
    "music",
    "trains",
    "volcanoes",
    "the printing press",
    "bees",
    "chess",
    "rivers",
    "glass",
    "bridges",
    "tea",
    "maps",
    "clocks",
    "deserts",
]
# About 30 tokens as a Falcon-style prompt, as the time-to-first-token target says.
CLIENT_PROMPT = "User: Write a short, friendly paragraph about {}, for a curious ten-year-old reader.\nAssistant:"


def batch_rows(bench) -> list[Row]:
    """`falconchat batch` of N prompts: -j 8 (decoded together) vs -j 1, tokens/s of the whole run."""
    count, tokens = bench.work.batch_prompts, bench.work.batch_tokens
    # Prompts that run long, so that every reply decodes its max_new_tokens (no ragged ends).
    lines = "".join(
        json.dumps(
            {"id": i, "prompt": f"Write a long, detailed essay about {TOPICS[i % len(TOPICS)]}, with many sections."}
        )
        + "\n"
        for i in range(count)
    ).encode()

    def rate(jobs: int) -> float:
        command = [*bench.falconchat, "batch", "-j", str(jobs), "-t", "0", "--max-new-tokens", str(tokens)]
        started = time.perf_counter()
        result = subprocess.run(command, input=lines, env=bench.env, capture_output=True, check=True)
        elapsed = time.perf_counter() - started
        records = [json.loads(line) for line in result.stdout.splitlines()]
        return sum(record["completion_tokens"] for record in records) / elapsed

    bench.say(f"{count} prompts, -j 8")
    together = bench.repeat(lambda: rate(8))
    bench.say(f"{count} prompts, -j 1")
    alone = bench.repeat(lambda: rate(1))
    return [
        Row(
            "batch of prompts, -j 8 (tokens/s)",
            median(together),
            "tok/s",
            f"the same {count}, -j 1",
            median(alone),
            "≥ 1.6 × -j 1",
        )
    ]


def serve_rows(bench) -> list[Row]:
    """8 streaming clients at once on `falconchat serve` vs one client; their time to first token."""
    tokens = bench.work.serve_tokens
    bench.say("starting falconchat serve")
    with Served(bench) as url:

        def run(clients: int) -> tuple[float, list[float]]:
            started = time.perf_counter()
            results = _at_once(url, [CLIENT_PROMPT.format(TOPICS[i]) for i in range(clients)], tokens)
            return sum(r[1] for r in results) / (time.perf_counter() - started), [r[0] for r in results]

        alone_rates, together_rates, firsts = [], [], []
        bench.say("8 clients at once, and one")
        if bench.work.warm_up:
            run(8)
        for _ in range(bench.work.reps):
            alone_rates.append(run(1)[0])
            rate, first = run(8)
            together_rates.append(rate)
            firsts.extend(first)
        held, free = [], []
        bench.say("8 clients, 4 held to a JSON schema")
        for _ in range(bench.work.reps):
            held.append(_with_grammars(url, tokens, constrained=True))
            free.append(_with_grammars(url, tokens, constrained=False))
        bench.say("one request through the batching engine, and the single path")
        engine_alone = bench.repeat(lambda: _decode_rate(bench, 8))
        single = bench.repeat(lambda: _decode_rate(bench, 1))
    return [
        Row(
            "serve, 8 streaming clients at once (tokens/s, all)",
            median(together_rates),
            "tok/s",
            "one client",
            median(alone_rates),
            "≥ 1.6 × one client",
        ),
        Row(
            "serve, 8 clients at once: time to first token (~30-token prompt)",
            median(firsts) * 1000,
            "ms",
            "—",
            None,
            "p95 ≤ 300 ms",
            p95(firsts) * 1000,
        ),
        Row(
            "serve, 8 clients: the 4 free ones' tokens/s beside 4 held to a JSON schema",
            median(held),
            "tok/s",
            "beside 4 free ones",
            median(free),
            "≥ 0.8 × no grammar",
        ),
        Row(
            "one request alone through the batching engine (decode tokens/s)",
            median(engine_alone),
            "tok/s",
            "single-sequence path",
            median(single),
            "≥ 0.97 × single",
        ),
    ]


def _decode_rate(bench, sequences: int) -> float:
    """Decode tokens/s of one greedy request, after its first token, in this process (read over
    at most the workload's cap: two threads on a busy machine can crawl)."""

    backend = bench._backend(sequences)
    params = SamplingParams(temperature=0, max_new_tokens=bench.work.engine_tokens)
    stamps: list[float] = []
    with closing(backend.generate(CLIENT_PROMPT.format("the history of computing"), params)) as events:
        for event in events:
            if isinstance(event, TextDelta):
                stamps.append(time.perf_counter())
                if stamps[-1] - stamps[0] >= bench.work.cap_s:
                    break
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _at_once(
    url: str, prompts: list[str], tokens: int, grammars: list | None = None, stamps: list | None = None
) -> list[tuple[float, int]]:
    """Stream every prompt from its own thread at the same moment: (time to first token, tokens).
    `grammars[i]`, if given, is TGI's `grammar` for prompt i; `stamps`, if given, gets each
    client's list of token arrival times (perf_counter)."""
    import requests  # noqa: PLC0415 (heavy: requests)

    results: list = [None] * len(prompts)
    start = threading.Barrier(len(prompts))

    def client(index: int) -> None:
        body: dict = {"inputs": prompts[index], "parameters": {"max_new_tokens": tokens, "details": True}}
        if grammars and grammars[index] is not None:
            body["parameters"]["grammar"] = grammars[index]
        start.wait()
        sent = time.perf_counter()
        first, count, arrivals = None, 0, []
        with requests.post(url + "/generate_stream", json=body, stream=True, timeout=600) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith(b"data:"):
                    first = first or time.perf_counter() - sent
                    count += not json.loads(line[5:])["token"]["special"]
                    arrivals.append(time.perf_counter())
        results[index] = (first, count)
        if stamps is not None:
            stamps[index] = arrivals

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if any(result is None for result in results):
        raise RuntimeError("a client got no reply from falconchat serve")
    return results


# A long string inside JSON: the constrained replies run as long as the free ones, and the grammar
# still refuses tokens (raw newlines, bare quotes), so that its full-vocabulary mask is exercised.
ESSAY_SCHEMA = {"type": "object", "properties": {"essay": {"type": "string"}}, "required": ["essay"]}
ESSAY_PROMPT = "User: Write a long essay about {} as JSON, with the text in an essay field.\nAssistant:"


def _with_grammars(url: str, tokens: int, *, constrained: bool) -> float:
    """8 clients at once, the even ones held to ESSAY_SCHEMA (or not): the odd (free) clients'
    tokens/s, counted only while all 8 still stream. Like for like: the same four clients, in a
    batch of eight in both runs, whether or not a constrained reply ends early (a smaller batch
    would decode the free ones faster and flatter the grammar)."""
    prompts = [(ESSAY_PROMPT if i % 2 == 0 else CLIENT_PROMPT).format(TOPICS[i]) for i in range(8)]
    grammar = {"type": "json", "value": ESSAY_SCHEMA}
    grammars = [grammar if constrained and i % 2 == 0 else None for i in range(8)]
    stamps: list = [None] * 8
    _at_once(url, prompts, tokens, grammars, stamps)
    # From the last client's first token to the first client's last: all eight decode together.
    start, end = max(s[0] for s in stamps), min(s[-1] for s in stamps)
    if end <= start:
        raise RuntimeError("the eight clients never streamed together")
    free = sum(sum(start < t <= end for t in stamps[i]) for i in range(1, 8, 2))
    return free / (end - start)


class Served:
    """`falconchat serve --port 0 ARGS` (by default 8 decoded together) for the duration of a
    block; yields its URL."""

    def __init__(self, bench, args: tuple[str, ...] = ("--parallel", "8", "--max-waiting", "64")):
        self.command = [*bench.falconchat, "serve", "--port", "0", *args]
        self.env = bench.env

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if match := re.search(r" on (http://\S+) \(Ctrl-C to stop\)", line):
                # Keep reading its log (one line per request) so that the pipe never fills.
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return match.group(1)
        raise RuntimeError("falconchat serve did not start")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(30)

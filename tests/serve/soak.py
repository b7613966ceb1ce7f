"""A soak run of `falconchat serve` (not part of the test run): mixed traffic for a chosen time,
and each interval's requests, errors, time to first token and the server's resident memory.

    .venv/bin/python tests/serve/soak.py --minutes 30            # the run issue 28 asks for
    .venv/bin/python tests/serve/soak.py --minutes 1 --interval 10 --clients 4   # a smoke run
    .venv/bin/python tests/serve/soak.py --minutes 3 --hostile       # with the hostile corpus beside

With `--hostile`, issue 28's hostile corpus (hostile_corpus.py: oversized bodies, deep JSON,
malformed UTF-8, lone surrogates, slow-loris bodies, streams never read) runs beside the
well-behaved clients, and how each attempt ended is printed per kind. Compare the well-behaved
tokens/s of a run with it against one without, the same flags otherwise.

The mix, per client in turn: /generate, /generate_stream (three in ten dropped by the client
after a few tokens), /v1/chat/completions (whole and streamed) and a /generate with a JSON
grammar. At the end it waits for the server to settle and checks that no sequence is left
running or waiting (`tgi_batch_current_size` and `tgi_queue_size` back to 0), then prints
the verdict: RSS at the end within 10% of RSS after 5 minutes (when the run is that long),
no 5xx, no leaked sequence. Exit status 0 when all hold.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))  # serve_process
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # processes
import hostile_corpus
from serve_process import CANCELLED, running

PROMPT = "User: Tell me about the history of the city of Paris.\nAssistant:"
GRAMMAR = {"type": "json", "value": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}}}}


@dataclass
class Tally:
    """What the clients saw in one interval (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # no HTTP answer at all (connection refused or reset)
    first_token_s: list[float] = field(default_factory=list)
    tokens: int = 0  # generated tokens the clients received

    def add(self, status: int | None, first_token_s: float | None = None, tokens: int = 0) -> None:
        with self.lock:
            self.requests += 1
            self.tokens += tokens
            if status is None:
                self.failures += 1
            else:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            if first_token_s is not None:
                self.first_token_s.append(first_token_s)

    def take(self) -> Tally:
        with self.lock:
            done = Tally(requests=self.requests, statuses=self.statuses, failures=self.failures, tokens=self.tokens)
            done.first_token_s = self.first_token_s
            self.requests, self.statuses, self.failures, self.first_token_s, self.tokens = 0, {}, 0, [], 0
            return done


def stream(url: str, body: dict, drop: bool) -> tuple[int, float | None, int]:
    """A streamed request; its status, the time to its first event and the events received
    (a token each; dropped after 3 if `drop`)."""
    started = time.monotonic()
    first = None
    events = 0
    with requests.post(url, json=body, stream=True, timeout=300) as response:
        if response.status_code != 200:
            return response.status_code, None, 0
        for line in response.iter_lines():
            if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
                continue
            first = first if first is not None else time.monotonic() - started
            events += 1
            if drop and events >= 3:
                break  # leaving the block closes the connection: the server must stop this generation
    return 200, first, events


def whole(response: requests.Response) -> tuple[int, float | None, int]:
    """A whole reply's status and its tokens (TGI's x-generated-tokens header)."""
    return response.status_code, None, int(response.headers.get("x-generated-tokens", 0))


def one_request(base: str, kind: str, rng: random.Random) -> tuple[int, float | None, int]:
    tokens = rng.randint(8, 48)
    if kind == "generate":
        body = {"inputs": PROMPT, "parameters": {"max_new_tokens": tokens}}
        return whole(requests.post(base + "/generate", json=body, timeout=300))
    if kind == "stream":
        body = {"inputs": PROMPT, "parameters": {"max_new_tokens": tokens}}
        return stream(base + "/generate_stream", body, drop=rng.random() < 0.3)
    if kind == "chat":
        body = {"messages": [{"role": "user", "content": "Say something about Paris."}], "max_tokens": tokens}
        return whole(requests.post(base + "/v1/chat/completions", json=body, timeout=300))
    if kind == "chat_stream":
        body = {"messages": [{"role": "user", "content": "Say something about Paris."}], "max_tokens": tokens}
        return stream(base + "/v1/chat/completions", {**body, "stream": True}, drop=rng.random() < 0.3)
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 24, "grammar": GRAMMAR}}
    return whole(requests.post(base + "/generate", json=body, timeout=300))


def client(base: str, seed: int, tally: Tally, stop: threading.Event) -> None:
    rng = random.Random(seed)
    for kind in itertools.cycle(["generate", "stream", "chat", "chat_stream", "stream", "grammar"]):
        if stop.is_set():
            return
        try:
            status, first, tokens = one_request(base, kind, rng)
        except requests.RequestException:
            status, first, tokens = None, None, 0
        tally.add(status, first, tokens)
        if status == 429:
            time.sleep(1)  # a well-behaved client: Retry-After


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def gauges(base: str) -> tuple[int, int]:
    """(running, waiting) sequences now, from /metrics."""
    values = {}
    for line in requests.get(base + "/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("tgi_batch_current_size", "tgi_queue_size"):
            values[name] = int(float(value))
    return values["tgi_batch_current_size"], values["tgi_queue_size"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between report lines")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--hostile", action="store_true", help="run the hostile corpus beside the clients")
    parser.add_argument("--hostile-kinds", nargs="+", metavar="KIND", default=[], help="only these kinds of it")
    parser.add_argument("--client-timeout", type=float, help="the server's --client-timeout (default: serve's)")
    parser.add_argument("serve_args", nargs="*", help="more `falconchat serve` flags (after --)")
    args = parser.parse_args()
    serve_args = list(args.serve_args)
    if args.client_timeout is not None:
        serve_args += ["--client-timeout", f"{args.client_timeout:g}"]
    client_timeout = args.client_timeout if args.client_timeout is not None else 30.0  # serve's default

    with tempfile.TemporaryDirectory() as home, running(Path(home), *serve_args) as server:
        pid = server.proc.pid
        tally, stop = Tally(), threading.Event()
        threads = [
            threading.Thread(target=client, args=(server.url, n, tally, stop), daemon=True) for n in range(args.clients)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        hostile = None
        if args.hostile:  # a process of its own: see hostile_corpus.py
            corpus = [sys.executable, hostile_corpus.__file__, server.url, str(client_timeout), *args.hostile_kinds]
            hostile = subprocess.Popen(corpus, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        print("minute  requests  5xx  other-errors  429  ttft-p50  ttft-p95  rss-MB  tokens/s", flush=True)
        rss_at_5, rss, errors_5xx, tokens, requests_done, last = None, rss_mb(pid), 0, 0, 0, started
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            time.sleep(min(args.interval, args.minutes * 60 - elapsed))
            done, rss, now = tally.take(), rss_mb(pid), time.monotonic()
            minute = (now - started) / 60
            if rss_at_5 is None and minute >= 5:
                rss_at_5 = rss
            high = sum(n for status, n in done.statuses.items() if status >= 500)
            other = done.failures + sum(n for s, n in done.statuses.items() if 400 <= s < 500 and s != 429)
            errors_5xx += high
            tokens += done.tokens
            requests_done += done.requests
            print(
                f"{minute:6.1f}  {done.requests:8d}  {high:3d}  {other:12d}  {done.statuses.get(429, 0):3d}"
                f"  {percentile(done.first_token_s, 50):8.2f}  {percentile(done.first_token_s, 95):8.2f}  {rss:6.0f}"
                f"  {done.tokens / (now - last):8.1f}",
                flush=True,
            )
            last = now
        measured_s = time.monotonic() - started
        stop.set()
        outcomes = json.loads(hostile.communicate("", timeout=120)[0]) if hostile else {}
        for thread in threads:
            thread.join(timeout=320)
        deadline = time.monotonic() + 30
        while (left := gauges(server.url)) != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.5)
        log = server.log
    flat = rss_at_5 is None or rss <= rss_at_5 * 1.10
    print(
        f"well-behaved: {requests_done} requests, {tokens} tokens received, {tokens / measured_s:.1f} tokens/s"
        f" over {measured_s:.0f} s"
    )
    if args.hostile:
        for kind, counts in outcomes.items():
            print(f"hostile {kind}: " + ", ".join(f"{n} x {outcome}" for outcome, n in counts.items()))
        dropped = log.count("dropped a client that read nothing")
        print(
            f"server log: {len(CANCELLED.findall(log))} generations cancelled, {dropped} clients dropped for reading nothing"
        )
    noisy = [line for line in log.splitlines() if "Traceback" in line or "Exception ignored" in line]
    print(
        f"rss after 5 min {rss_at_5 if rss_at_5 is None else round(rss_at_5)} MB, at the end {rss:.0f} MB"
        f" ({'flat' if flat else 'GREW'}); 5xx {errors_5xx}; left running/waiting {left[0]}/{left[1]};"
        f" tracebacks in the server's log {len(noisy)}"
    )
    return 0 if flat and errors_5xx == 0 and left == (0, 0) and not noisy else 1


if __name__ == "__main__":
    sys.exit(main())

"""`batch`'s runner, in process, with a fake backend: order, retries, slowing down, fail-fast."""

from __future__ import annotations

import io
import random
import threading
import time
from pathlib import Path

import pytest

from falconchat.backends.registry import BACKENDS
from falconchat.batch import command
from falconchat.batch import runner as batch
from falconchat.batch.input import parse_lines
from falconchat.batch.progress import Notes
from falconchat.batch.runner import BatchOptions, Runner
from falconchat.config_models import ModelSpec
from falconchat.environment import Environment
from falconchat.errors import Overloaded, Rejected
from falconchat.types import Done, SamplingParams, TextDelta

SPEC = ModelSpec(name="fake", backend="tgi", endpoint="http://fake.invalid")


class FakeEndpoint:
    """Answers "re: <message>" after a random pause; more than `capacity` at once are overloaded."""

    def __init__(self, capacity: int = 1000, fail: set[str] = frozenset()):
        self.capacity = capacity
        self.fail = fail
        self.lock = threading.Lock()
        self.active = self.peak = self.overloads = self.backends = 0

    def backend(self, spec):
        with self.lock:
            self.backends += 1
        return FakeBackend(self)


class FakeBackend:
    name = "fake"
    context_length = 2048
    takes_messages = False
    sees_images = False

    def __init__(self, endpoint: FakeEndpoint):
        self.endpoint = endpoint

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def stream(self, prompt: str, params: SamplingParams):
        ep = self.endpoint
        message = prompt.rsplit("User: ", 1)[-1].removesuffix("\nAssistant:")
        with ep.lock:
            ep.active += 1
            ep.peak = max(ep.peak, ep.active)
            over = ep.active > ep.capacity
            ep.overloads += over
        try:
            if over:
                raise Overloaded("busy")
            if message in ep.fail:
                raise Rejected("no")
            time.sleep(random.uniform(0.001, 0.02))
            yield TextDelta("re: " + message)
            yield Done("stop", completion_tokens=2, first_token_s=0.01, total_s=0.02)
        finally:
            with ep.lock:
                ep.active -= 1

    def close(self) -> None:
        pass


class Sink:
    def __init__(self):
        self.records: list[dict] = []
        self.writes = 0

    def write_lines(self, records):
        self.records += records
        self.writes += 1


def run(endpoint: FakeEndpoint, n: int, monkeypatch, **options) -> tuple[Sink, dict, Runner]:
    monkeypatch.setattr(batch, "open_backend", endpoint.backend)
    monkeypatch.setattr(batch, "BACKOFF_S", 0.005)
    items = parse_lines([f"message {i}" for i in range(n)], "lines", "", SamplingParams(), 10_000).items
    opts = BatchOptions(**options)
    runner = Runner(
        SPEC, items, opts.concurrency or 8, opts, Notes(Environment(None, io.StringIO(), io.StringIO(), {}, Path.cwd()))
    )
    sink = Sink()
    stats = runner.run(sink)
    return sink, stats, runner


def test_results_come_in_input_order_with_one_backend_per_worker(monkeypatch):
    endpoint = FakeEndpoint()
    sink, stats, _ = run(endpoint, 300, monkeypatch, concurrency=16)
    assert [r["id"] for r in sink.records] == list(range(1, 301))
    assert all(r["reply"] == f"re: message {r['id'] - 1}" for r in sink.records)
    assert stats["answered"] == 300 and stats["failed"] == 0 and stats["tokens"] == 600
    assert endpoint.backends == 16 and endpoint.peak <= 16
    assert sink.writes < 300  # lines that are ready together go out in one write


def test_an_overloaded_endpoint_gets_fewer_requests_in_flight_and_every_item_succeeds(monkeypatch):
    endpoint = FakeEndpoint(capacity=3)
    sink, stats, runner = run(endpoint, 200, monkeypatch, concurrency=24, retries=6)
    assert stats["failed"] == 0, [r for r in sink.records if "error" in r][:3]
    assert [r["id"] for r in sink.records] == list(range(1, 201))
    assert endpoint.overloads > 0 and runner.limit < 24


def test_fail_fast_writes_up_to_the_first_failure_and_nothing_after(monkeypatch):
    endpoint = FakeEndpoint(fail={"message 30"})
    sink, stats, _ = run(endpoint, 200, monkeypatch, concurrency=8, fail_fast=True)
    assert [r["id"] for r in sink.records] == list(range(1, 32))
    assert sink.records[-1]["error"]["kind"] == "rejected" and stats["failed"] == 1


def test_without_fail_fast_a_failure_is_recorded_and_the_batch_goes_on(monkeypatch):
    endpoint = FakeEndpoint(fail={"message 3", "message 7"})
    sink, stats, _ = run(endpoint, 20, monkeypatch, concurrency=4)
    assert len(sink.records) == 20 and stats["failed"] == 2
    assert [r["id"] for r in sink.records if "error" in r] == [4, 8]


@pytest.mark.parametrize(
    "backend, asked, expected",
    [
        ("tgi", None, 8),
        ("tgi", 32, 32),
        ("local", None, BACKENDS["local"].default_sequences()),
        ("local", 4, 4),
        ("local", 64, 16),
        ("transformers", 4, 1),
    ],
)
def test_default_concurrency_per_backend(backend, asked, expected):
    spec = ModelSpec(name="m", backend=backend)
    notes = []

    class Collect:
        def write(self, text):
            notes.append(text)

    assert command.concurrency_for(spec, asked, Collect()) == expected
    assert bool(notes) == (asked is not None and asked != expected)  # it says "-j 4 runs as -j 1"


def test_tokens_streamed_are_counted_while_an_item_is_still_decoding(monkeypatch):
    """The live tokens/s counts each piece as it streams, not only finished items' totals."""
    release = threading.Event()
    seen = []

    class Slow(FakeBackend):
        def stream(self, prompt, params):
            for word in ("one", " two", " three"):
                yield TextDelta(word)
            seen.append(runner.streamed_tokens)  # all three pieces out, the item not finished
            release.wait(5)
            yield Done("stop", completion_tokens=3, first_token_s=0.01, total_s=0.02)

    endpoint = FakeEndpoint()
    monkeypatch.setattr(batch, "open_backend", lambda spec: Slow(endpoint))
    items = parse_lines(["only"], "lines", "", SamplingParams(), 10_000).items
    runner = Runner(
        SPEC, items, 1, BatchOptions(), Notes(Environment(None, io.StringIO(), io.StringIO(), {}, Path.cwd()))
    )
    worker = threading.Thread(target=runner.run, args=(Sink(),))
    worker.start()
    while not seen and worker.is_alive():
        time.sleep(0.01)
    release.set()
    worker.join(10)
    assert seen and seen[0] >= 2  # pieces may be held back together for stop detection

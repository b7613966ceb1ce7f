"""`batch` output and bookkeeping, in process: resume, partial lines, backoff, summary."""

from __future__ import annotations

import json

import pytest

from falconchat.batch import runner as batch
from falconchat.batch.output import OutputFile, encode
from falconchat.batch.progress import summary_line
from falconchat.errors import InputError, UsageError


def test_lines_are_whole_and_appended(tmp_path):
    path = tmp_path / "out.jsonl"
    out = OutputFile(str(path), resume=False, cwd=path.parent)
    out.write_lines([{"id": 1, "reply": "a\nb"}, {"id": "x", "reply": "\x1b[2J"}])
    out.write_lines([])
    out.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(line)["id"] for line in lines[:-1]] == [1, "x"]


def test_an_existing_file_is_not_overwritten_without_resume(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1}\n')
    with pytest.raises(UsageError):
        OutputFile(str(path), resume=False, cwd=path.parent)
    assert path.read_text() == '{"id": 1}\n'


def test_resume_reads_the_ids_and_drops_a_partial_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": 1, "reply": "a"}\n{"id": "2", "error": {}}\n{"id": 3, "rep')
    out = OutputFile(str(path), resume=True, cwd=path.parent)
    assert out.done_keys == {"1", '"2"'} and out.discarded_bytes == len(b'{"id": 3, "rep')
    out.write_lines([{"id": 3, "reply": "c"}])
    out.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [1, "2", 3]


def test_resume_refuses_a_file_that_is_not_batch_results(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n")
    with pytest.raises(InputError, match="line 1"):
        OutputFile(str(path), resume=True, cwd=path.parent)


def test_a_lone_surrogate_still_makes_one_valid_line():
    line = encode({"id": "\ud800", "reply": "é"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["id"] == "\ud800"


def test_backoff_doubles_with_jitter_up_to_a_cap(monkeypatch):
    monkeypatch.setattr(batch, "BACKOFF_S", 1.0)
    for attempt, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (10, batch.MAX_BACKOFF_S)]:
        delays = {batch.backoff(attempt) for _ in range(50)}
        assert all(nominal / 2 <= d <= nominal for d in delays) and len(delays) > 1


def test_summary_line():
    stats = {
        "items": 10,
        "answered": 8,
        "failed": 2,
        "tokens": 400,
        "elapsed_s": 4.0,
        "interrupted": False,
        "bad": 1,
        "skipped": 5,
        "output": "out.jsonl",
    }
    assert summary_line(stats) == (
        "10 items: 8 answered, 2 failed · 1 bad input lines skipped · 5 already in "
        "out.jsonl · 400 tokens in 4.0s (2.5 items/s, 100 tokens/s)"
    )
    stats.update(interrupted=True, answered=3, failed=0)
    assert summary_line(stats).startswith("interrupted after 3 of 10 items")
    assert summary_line(stats).endswith("run the same command with --resume to continue")


# ---- the progress bar's figures and the summary's rate (issue 15, item 14) ------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def simulated_run(total: int, together: int, seed: int, startup_s: float):
    """A batch as the bundled model runs it: `together` items decode at once, each sequence at
    4 tokens/s, each reply 20-64 tokens long, results written in input order; the first token
    comes after `startup_s` (loading, the first prompts). Yields, every 0.25 s of the fake clock:
    (seconds, done, answered, finished_tokens, streamed_tokens, in_flight)."""
    import random

    rng = random.Random(seed)
    lengths = [rng.randint(20, 64) for _ in range(total)]
    streamed = [0.0] * total
    finished_at: dict[int, float] = {}
    t, step = 0.0, 0.25
    while len(finished_at) < total:
        t += step
        if t > startup_s:
            running = [i for i in range(total) if i not in finished_at][:together]
            for i in running:
                streamed[i] = min(lengths[i], streamed[i] + 4 * step)
                if streamed[i] >= lengths[i]:
                    finished_at[i] = t
        done = 0
        while done < total and done in finished_at:  # written in input order
            done += 1
        decoding = sum(1 for i in range(total) if i not in finished_at and streamed[i] > 0)
        yield t, done, done, sum(lengths[:done]), int(sum(streamed)), decoding
    return


def test_eta_counts_items_in_flight_and_stays_near_the_truth_with_a_fake_clock():
    """Issue 23 item 8: `elapsed / done x left` said 5:28 with one item finished and 8 in flight
    on a run that ended 40 s later, and grew to 10:42 (a factor of 8, then 16). Every estimate
    made once an item is written is within a factor of 2.5 of the time really left (while more
    than 10 s are: the last items decode with fewer beside them, which no rate foresees)."""
    from falconchat.batch.progress import Eta

    for seed in range(5):
        run = list(simulated_run(32, 8, seed, startup_s=3.0))
        end = run[-1][0]
        clock = FakeClock()
        eta = Eta(32, clock)
        seen = []
        for t, *figures in run:
            clock.now = 100.0 + t
            estimate = eta.seconds(*figures)
            done = figures[0]
            truly_left = end - t
            if done == 0:
                assert estimate is None  # no guess before an item is written
            elif truly_left > 10:
                seen.append(estimate)
                assert truly_left / 2.5 <= estimate <= truly_left * 2.5, (seed, t, done, estimate, truly_left)
        assert len(seen) > 10
        assert eta.seconds(32, 32, 1, 1) == 0.0


def test_eta_text_says_nothing_before_the_first_item_and_h_mm_ss_after():
    from falconchat.batch.progress import Eta

    clock = FakeClock()
    eta = Eta(30, clock)
    assert eta.text(0, 0, 0, 0) == "-:--:--"
    assert eta.text(0, 0, 0, 5) == "-:--:--"  # the first token: the clock starts here
    clock.now += 41.0
    assert eta.text(2, 2, 100, 100) == "0:09:34"  # 20.5 s an item, 28 to go, nothing else in flight
    assert eta.text(2, 2, 100, 150) == "0:06:09"  # one more item's worth in flight: 41 / 3 x 27
    assert eta.text(30, 30, 1500, 1500) == "0:00:00"


def test_tokens_per_s_counts_what_is_still_decoding():
    from falconchat.batch.progress import tokens_per_s

    assert tokens_per_s(50, 10.0) == 5.0 and tokens_per_s(50, 0.0) == 0.0


def test_a_slow_batch_summary_says_seconds_per_item_not_zero_items_per_s():
    stats = {"items": 2, "answered": 2, "failed": 0, "tokens": 80, "elapsed_s": 41.0, "interrupted": False}
    stats.update(bad=0, skipped=0, output=None)
    line = summary_line(stats)
    assert "20.5 s/item" in line and "0.0 items/s" not in line and "2 tokens/s" in line

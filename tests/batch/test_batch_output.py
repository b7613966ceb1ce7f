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


def test_eta_comes_from_the_runs_own_rate_of_items():
    from falconchat.batch.progress import eta_text

    assert eta_text(2, 30, 41.0) == "0:09:34"  # 20.5 s an item, 28 to go (not 0:00:42)
    assert eta_text(0, 30, 41.0) == "-:--:--"  # nothing finished: no guess
    assert eta_text(30, 30, 60.0) == "0:00:00"


def test_tokens_per_s_counts_what_is_still_decoding():
    from falconchat.batch.progress import tokens_per_s

    assert tokens_per_s(50, 10.0) == 5.0 and tokens_per_s(50, 0.0) == 0.0


def test_a_slow_batch_summary_says_seconds_per_item_not_zero_items_per_s():
    stats = {"items": 2, "answered": 2, "failed": 0, "tokens": 80, "elapsed_s": 41.0, "interrupted": False}
    stats.update(bad=0, skipped=0, output=None)
    line = summary_line(stats)
    assert "20.5 s/item" in line and "0.0 items/s" not in line and "2 tokens/s" in line

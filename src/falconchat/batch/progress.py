"""What `batch` tells the user on stderr: notes, the progress bar (terminals only), the summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from falconchat.environment import Environment
from falconchat.render import make_console
from falconchat.text import sanitize

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

    from falconchat.batch.replicas import Pool


class Notes:
    """One-line notes on stderr, safe from any thread; above the progress bar while it is drawn."""

    def __init__(self, env: Environment, *, verbose: bool = False):
        self.env = env
        self.stream = env.stderr
        self.verbose_on = verbose
        self.console: Console | None = None  # the progress bar's console while it is drawn
        self._lock = threading.Lock()

    def draws(self) -> bool:
        """A progress bar can be drawn on stderr: a terminal, TERM not `dumb` (the Environment's)."""
        return self.env.draws_on(self.stream)

    def write(self, text: str, *, prefix: str = "falconchat: ") -> None:
        line = prefix + sanitize(text)
        with self._lock:
            try:
                if self.console is not None:
                    self.console.print(line)
                else:
                    self.stream.write(line + "\n")
                    self.stream.flush()
            except (BrokenPipeError, OSError):
                pass

    def verbose(self, text: str) -> None:
        if self.verbose_on:
            self.write(text)


class RunnerCounts(Protocol):
    """What the bar reads of the running batch (batch/runner.py's Runner)."""

    @property
    def streamed_tokens(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def pool(self) -> Pool | None: ...


class Progress:
    """Done / failed / in flight, tokens/s and ETA, redrawn in place; nothing at all unless
    stderr is a terminal (a log file or pipe gets only the notes and the summary)."""

    def __init__(self, runner: RunnerCounts, total: int, notes: Notes):
        self.runner = runner
        self.total = total
        self.notes = notes
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._replica_tasks: list = []
        self.eta = Eta(total)
        self._updated_at = -REDRAW_S

    def __enter__(self) -> Progress:
        if self.total and self.notes.draws():
            self._start()
        return self

    def _start(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn  # noqa: PLC0415 (heavy: rich)
        from rich.progress import Progress as RichProgress  # noqa: PLC0415 (heavy: rich)

        bar = self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=make_console(self.notes.stream, self.notes.env),
            transient=True,  # the summary line replaces it
        )
        self._task = bar.add_task("batch", total=self.total, detail=self._detail(0, 0, "0", NO_ESTIMATE))
        # Several replicas: a row each, its bar the share of the items it answered.
        pool = self.runner.pool
        self._replica_tasks = [
            (replica, bar.add_task(urlsplit(replica.url).netloc or replica.url, total=self.total, detail=""))
            for replica in (pool.replicas if pool is not None else ())
        ]
        bar.start()
        self.notes.console = bar.console

    @staticmethod
    def _detail(failed: int, in_flight: int, rate: str, eta: str) -> str:
        return f"{failed} failed · {in_flight} in flight · {rate} tokens/s · ETA {eta}"

    def update(self, stats: dict, elapsed: float) -> None:
        if self._bar is None or self._task is None:
            return
        # The bar is drawn 10 times a second; updating it for every written row (thousands a
        # second from fast replicas) cost more CPU than the rows.
        if elapsed - self._updated_at < REDRAW_S and stats["answered"] + stats["failed"] < self.total:
            return
        self._updated_at = elapsed
        done = stats["answered"] + stats["failed"]
        eta = self.eta.text(
            done, stats["answered"], stats["tokens"], self.runner.streamed_tokens, self.runner.in_flight
        )
        rate = f"{tokens_per_s(self.runner.streamed_tokens, elapsed):.0f}"
        self._bar.update(
            self._task, completed=done, detail=self._detail(stats["failed"], self.runner.in_flight, rate, eta)
        )
        requests = sum(replica.requests for replica, _ in self._replica_tasks) or 1
        for replica, task in self._replica_tasks:
            self._bar.update(task, completed=replica.answered, detail=replica_detail(replica, requests, elapsed))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self.notes.console = None
            self._bar.stop()


def tokens_per_s(streamed: int, elapsed: float) -> float:
    """Tokens streamed so far, those of items still decoding included, per second of the run."""
    return streamed / elapsed if elapsed > 0 else 0.0


NO_ESTIMATE = "-:--:--"
REDRAW_S = 0.1


class Eta:
    """Time left, from the work done so far over the time spent decoding it.

    Work is counted in items: the finished ones, and the items still decoding as the share of
    an average reply they have streamed (with 8 decoded together, one finished item says
    little: the first estimate was 5:28 on a 50 s run, and grew). The time is counted from the
    first token, so that loading the model and reading the first prompts is not extrapolated
    over the whole run. Nothing is guessed before an item finishes."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.clock = clock
        self._first_token_at: float | None = None

    def seconds(
        self, done: int, answered: int, finished_tokens: int, streamed_tokens: int, in_flight: int = 0
    ) -> float | None:
        """`done`: items written (answered or failed); `finished_tokens`: the tokens of the
        answered ones; `streamed_tokens`: every token streamed, items not yet written included;
        `in_flight`: the items decoding now."""
        now = self.clock()
        if self._first_token_at is None and streamed_tokens > 0:
            self._first_token_at = now
        left = self.total - done
        if done <= 0 or self._first_token_at is None:
            return None
        if left <= 0:
            return 0.0
        elapsed = now - self._first_token_at
        ahead = 0.0
        unwritten = max(0, streamed_tokens - finished_tokens)
        if answered > 0 and finished_tokens > 0:
            # The first items to finish are the short ones: the items decoding now will be at
            # least as long as what they have streamed so far.
            per_item = max(finished_tokens / answered, unwritten / in_flight if in_flight else 0.0)
            ahead = min(unwritten / per_item, left * 0.95)
        worked = done + ahead
        if elapsed <= 0:
            return None
        per_item_s = elapsed / worked  # at the rate the items go through together
        # The last items decode with fewer beside them: about half an item's own time more.
        tail = min(in_flight, left) * per_item_s / 2
        return per_item_s * (self.total - worked) + tail

    def text(self, done: int, answered: int, finished_tokens: int, streamed_tokens: int, in_flight: int = 0) -> str:
        seconds = self.seconds(done, answered, finished_tokens, streamed_tokens, in_flight)
        return NO_ESTIMATE if seconds is None else clock_text(seconds)


def clock_text(seconds: float) -> str:
    left = round(seconds)
    return f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"


def item_rate(done: int, elapsed: float) -> str:
    """Items per second, or seconds per item when that is below one (never "0.0 items/s")."""
    if done / elapsed >= 1:
        return f"{done / elapsed:.1f} items/s"
    return f"{elapsed / done:.1f} s/item"


def summary_line(stats: dict) -> str:
    """One line: what was done, what failed or was skipped, and how fast."""
    done = stats["answered"] + stats["failed"]
    parts = [f"{stats['items']} items: {stats['answered']} answered, {stats['failed']} failed"]
    if stats["bad"]:
        parts.append(f"{stats['bad']} bad input lines skipped")
    if stats["skipped"]:
        parts.append(f"{stats['skipped']} already in {stats['output']}")
    elapsed = stats.get("elapsed_s", 0.0)
    if elapsed > 0:
        rate = f"{item_rate(done, elapsed)}, " if done else ""
        parts.append(f"{stats['tokens']} tokens in {elapsed:.1f}s ({rate}{stats['tokens'] / elapsed:.0f} tokens/s)")
    line = " · ".join(parts)
    if stats["interrupted"]:
        again = "; run the same command with --resume to continue" if stats["output"] else ""
        line = f"interrupted after {done} of {stats['items']} items · {line}{again}"
    return line


def replica_lines(replicas: list[dict]) -> list[str]:
    """One line per replica: its share of the requests, tokens, errors and time cooled down."""
    total = sum(r["requests"] for r in replicas) or 1
    return [
        f"{r['endpoint']}: {r['requests']} requests ({100 * r['requests'] / total:.0f}%), {r['tokens']} tokens, "
        f"{r['errors']} errors, cooled down {r['cooled_down_s']:.1f}s"
        for r in replicas
    ]


def replica_detail(replica, requests: int, elapsed: float) -> str:
    """A replica's row: its share of the requests, errors, in flight, tokens/s, and cooling down."""
    cooling = " · cooling down" if time.monotonic() < replica.cooled_until else ""
    return (
        f"{100 * replica.requests / requests:.0f}% of requests · {replica.errors} errors · "
        f"{replica.in_flight} in flight · {tokens_per_s(replica.tokens, elapsed):.0f} tokens/s{cooling}"
    )

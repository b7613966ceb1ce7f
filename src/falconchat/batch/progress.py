"""What `batch` tells the user on stderr: notes, the progress bar (terminals only), the summary."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from falconchat.environment import Environment

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID


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
        from falconchat.text import sanitize

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


class Progress:
    """Done / failed / in flight, tokens/s and ETA, redrawn in place; nothing at all unless
    stderr is a terminal (a log file or pipe gets only the notes and the summary)."""

    def __init__(self, runner, total: int, notes: Notes):
        self.runner = runner
        self.total = total
        self.notes = notes
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Progress:
        if self.total and self.notes.draws():
            self._start()
        return self

    def _start(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as RichProgress

        from falconchat.render import make_console

        bar = self._bar = RichProgress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "{task.fields[failed]} failed · {task.fields[in_flight]} in flight · {task.fields[rate]} tokens/s"
                " · ETA {task.fields[eta]}"
            ),
            console=make_console(self.notes.stream, self.notes.env),
            transient=True,  # the summary line replaces it
        )
        self._task = bar.add_task("batch", total=self.total, failed=0, in_flight=0, rate="0", eta=eta_text(0, 1, 0))
        bar.start()
        self.notes.console = bar.console

    def update(self, stats: dict, elapsed: float) -> None:
        if self._bar is None or self._task is None:
            return
        done = stats["answered"] + stats["failed"]
        self._bar.update(
            self._task,
            completed=done,
            failed=stats["failed"],
            in_flight=self.runner.in_flight,
            rate=f"{tokens_per_s(self.runner.streamed_tokens, elapsed):.0f}",
            eta=eta_text(done, self.total, elapsed),
        )

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self.notes.console = None
            self._bar.stop()


def tokens_per_s(streamed: int, elapsed: float) -> float:
    """Tokens streamed so far, those of items still decoding included, per second of the run."""
    return streamed / elapsed if elapsed > 0 else 0.0


def eta_text(done: int, total: int, elapsed: float) -> str:
    """Time left at the run's own rate of finished items (Rich's estimate looks at the last
    30 s only: with items slower than that it showed a few seconds for a long run)."""
    if done <= 0 or elapsed <= 0:
        return "-:--:--"
    left = round(elapsed / done * max(0, total - done))
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

"""`falconchat bench`: run the groups of rows (bench/runner.py) with their progress on stderr,
then the table (or JSON) on stdout."""

from __future__ import annotations

import json
import time

from falconchat.bench import runner
from falconchat.bench.workload import ROW_GROUPS
from falconchat.environment import Environment
from falconchat.errors import UsageError


def groups_from(only: str | None) -> set[str] | None:
    """`--only a,b`: the groups named, each one known."""

    if only is None:
        return None
    groups = {name.strip() for name in only.split(",") if name.strip()}
    unknown = sorted(groups - set(ROW_GROUPS))
    if unknown or not groups:
        raise UsageError(f"--only: unknown group {', '.join(unknown) or '(none)'}; known: {', '.join(ROW_GROUPS)}")
    return groups


class Progress:
    """Each step as it starts, with the time so far: redrawn in place on a terminal, one line
    each in a log or pipe (a long run is never silent until the table). A message (a note, or
    the error that ends the run) always starts on a line of its own."""

    def __init__(self, env: Environment):
        self.stderr = env.stderr
        self.live = env.draws_on(env.stderr)  # a terminal, and not a dumb one: redrawn in place
        self.started = time.monotonic()
        self.shown = ""  # the live line on the terminal now

    def step(self, what: str) -> None:
        line = f"falconchat bench: {time.monotonic() - self.started:4.0f}s {what}"
        if self.live:
            self._write(f"\r\x1b[2K{line}")
            self.shown = line
        else:
            self._write(line + "\n")

    def note(self, message: str) -> None:
        """A line that stays: the live line is cleared for it, then drawn again below it."""
        if self.live:
            self._write(f"\r\x1b[2Kfalconchat bench: {message}\n{self.shown}")
        else:
            self._write(f"falconchat bench: {message}\n")

    def end(self, keep: bool) -> None:
        """Done: clear the live line, or (`keep`: an error follows) end it where it stands."""
        if self.live and self.shown:
            self._write("\n" if keep else "\r\x1b[2K")
            self.shown = ""

    def _write(self, text: str) -> None:
        try:
            self.stderr.write(text)
            self.stderr.flush()
        except (BrokenPipeError, OSError):
            pass


def run_bench(env: Environment, quick: bool, as_json: bool, only: str | None) -> int:
    groups = groups_from(only)
    progress = Progress(env)
    try:
        rows = runner.run(quick, progress.step, groups, progress.note, environ=env.environ)
    except BaseException:
        progress.end(keep=True)  # what failed is said on a line of its own, after the step it ended
        raise
    progress.step("done")
    progress.end(keep=False)
    if as_json:
        print(json.dumps(runner.as_json(rows), indent=1), file=env.stdout)
    else:
        runner.print_table(rows, env)
    return 0

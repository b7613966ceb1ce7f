"""What a command sees of the world: its standard streams, environment variables and working
directory, in one object. `cli.app.main` builds it from the process; everything below reads
the world through it (a terminal's TERM, NO_COLOR and COLUMNS, the user's EDITOR, standard
input), so tests build one of their own (streams over bytes, a dict of variables, a temporary
directory) and run a command in process, as httpie's `Environment` and Rich's
`Console(_environ=…)` allow."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO


@dataclass
class Environment:
    stdin: TextIO | None  # None: no standard input at all (a daemon, a closed descriptor)
    stdout: TextIO  # text streams; binary input and output go through their `.buffer`
    stderr: IO[str]
    environ: Mapping[str, str]
    cwd: Path
    # Tracebacks with errors: `--debug` until the settings are read, then the settings' `debug`
    # (the flag, FALCONCHAT_DEBUG in the environment or a .env file, the config file).
    debug: bool = False

    @classmethod
    def of_process(cls) -> Environment:
        return cls(sys.stdin, sys.stdout, sys.stderr, os.environ, Path.cwd())

    @property
    def stdin_is_piped(self) -> bool:
        """Input comes from a pipe or a file, not a person at a terminal."""
        return self.stdin is not None and not self.stdin.isatty()

    def draws_on(self, stream: IO[str]) -> bool:
        """`stream` is a terminal that can be drawn on (live Markdown, a progress bar): a tty,
        and TERM is not `dumb`."""
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):  # no such method, or a closed stream
            return False
        return tty and self.environ.get("TERM") != "dumb"

    @property
    def editor(self) -> str:
        """The command line of the user's editor (`/edit`), as git and most tools choose it."""
        return self.environ.get("VISUAL") or self.environ.get("EDITOR") or "vi"

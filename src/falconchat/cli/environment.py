"""What a command sees of the world: its standard streams, environment variables and working
directory, in one object. `run()` builds it from the process; tests build one of their own
(streams over bytes, a dict of variables, a temporary directory) and run a command in process,
as httpie's `Environment` and Rich's `Console(_environ=…)` allow."""

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

    @classmethod
    def of_process(cls) -> Environment:
        return cls(sys.stdin, sys.stdout, sys.stderr, os.environ, Path.cwd())

    @property
    def stdin_is_piped(self) -> bool:
        """Input comes from a pipe or a file, not a person at a terminal."""
        return self.stdin is not None and not self.stdin.isatty()

    def is_on(self, name: str) -> bool:
        return self.environ.get(name, "").lower() in ("1", "true", "yes", "on")

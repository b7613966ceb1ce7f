"""The prompt `ask` sends with its sources: `-f/--file` blocks before the words, `--sf` blocks
in the system message (sources.py reads them), notes on what was skipped on stderr."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from falconchat.cli.stdin import read_prompt
from falconchat.environment import Environment
from falconchat.errors import UsageError
from falconchat.images import read_images
from falconchat.sources import STDIN, Block, read_sources, with_blocks
from falconchat.web_source import URL_TIMEOUT_S


@dataclass(frozen=True)
class Prompt:
    message: str  # the blocks of -f, then the words
    blocks: tuple[Block, ...]  # -f's
    system_blocks: tuple[Block, ...]  # --sf's

    @property
    def attached(self) -> tuple[Block, ...]:
        return (*self.system_blocks, *self.blocks)


def prompt_with_sources(env: Environment, settings, flags: dict[str, Any], prompt: str | None) -> Prompt:
    files, system_files = list(flags.get("file") or ()), list(flags.get("system_file") or ())
    if files.count(STDIN) + system_files.count(STDIN) > 1:
        raise UsageError("standard input is read once: give -f - or --sf - once")
    timeout = min(settings.model.timeout, URL_TIMEOUT_S)  # --timeout bounds a URL's fetch too
    system = read_sources(system_files, env, settings.max_file_size, timeout)
    loaded = read_sources(files, env, settings.max_file_size, timeout)
    loaded.blocks.extend(read_images(list(flags.get("attach") or ()), env, settings.max_file_size))
    for note in (*system.notes, *loaded.notes):
        env.stderr.write(f"falconchat: {note}\n")
    words = read_prompt(
        env, prompt, settings.max_input_bytes, stdin_taken=STDIN in files + system_files, optional=bool(loaded.blocks)
    )
    return Prompt(with_blocks(words, loaded.blocks), tuple(loaded.blocks), tuple(system.blocks))

"""What the commands write besides the reply: the one error line, validated JSON, and a
quiet stdout once its reader has gone."""

from __future__ import annotations

import os
from typing import Any

from falconchat.environment import Environment


def error_line(env: Environment, message: str) -> None:
    from falconchat.text import sanitize  # noqa: PLC0415 (per-command dispatch)

    try:
        env.stderr.write(f"falconchat: error: {sanitize(message)}\n")
        env.stderr.flush()
    except (BrokenPipeError, OSError):
        pass


def silence_stdout(env: Environment) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, env.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def print_json(env: Environment, text: str, value: Any) -> None:
    """The validated reply: highlighted on a terminal, exactly the JSON in a pipe."""
    if env.draws_on(env.stdout):
        from rich.json import JSON  # noqa: PLC0415 (heavy: rich)

        from falconchat.render import make_console  # noqa: PLC0415 (per-command dispatch)

        make_console(env.stdout, env).print(JSON.from_data(value, ensure_ascii=True))
    else:
        env.stdout.write(text.strip() + "\n")
        env.stdout.flush()

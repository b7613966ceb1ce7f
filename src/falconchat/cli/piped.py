"""`… | falconchat` with no command: one message answered as `ask` does — unless a line is one
of the chat's commands (`/exit`, `/temp 0.3`, `/save notes`), which says the input is a chat
script: then each line is a message or a command, as `falconchat chat` reads them. (Such a
line sent to the model as text was never what the user meant.)"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

from falconchat.cli.ask import ask_once
from falconchat.cli.chat import chat_session
from falconchat.config import load_settings
from falconchat.environment import Environment
from falconchat.repl.commands import COMMANDS


def piped_default(env: Environment, flags: dict[str, Any], *, no_history: bool = False) -> int:
    assert env.stdin is not None  # piped
    limit = load_settings(flags, environ=env.environ, cwd=env.cwd).max_input_bytes
    data = env.stdin.buffer.read(limit + 1)  # what ask reads; over the limit, ask says so
    again = replace(env, stdin=io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace"))
    if len(data) <= limit and is_chat_script(data.decode("utf-8", errors="replace")):
        return chat_session(again, flags, no_history=no_history)
    return ask_once(again, flags, None)


def is_chat_script(text: str) -> bool:
    """A line that starts with one of the chat's command names (not just any `/path`)."""
    names = {name for command in COMMANDS for name in command.names}
    return any(line.split()[0].lower() in names for line in text.splitlines() if line.startswith("/") and line.split())

"""Driving the real REPL in a pseudo-terminal (pexpect), isolated from the user's settings.

Each `Chat` is one `python -m falconchat …` process on the bundled model, with
XDG_CONFIG_HOME and XDG_DATA_HOME under the test's own directory, so the
history file, sessions and config a test writes are the only ones it sees.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: processes.py
from processes import FALCONCHAT, isolated_env  # noqa: E402

PROMPT = ">>>"
PROMPT_OPENS = "\x1b[?2004h"  # prompt-toolkit turns bracketed paste on as each prompt opens
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[=>]|\r")
MODEL = "smollm2"
QUICK = ("-t", "0", "--max-new-tokens", "16")
TIMEOUT = 90  # generous: the machine may be busy with other test runs

UP = "\x1b[A"
TAB = "\t"
ALT_ENTER = "\x1b\r"
ENTER = "\r"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


def plain(data: str) -> str:
    return ANSI.sub("", data)


def data_dir(home: Path) -> Path:
    return home / "data" / "falconchat"


def sessions_dir(home: Path) -> Path:
    return data_dir(home) / "sessions"


def history_file(home: Path) -> Path:
    return data_dir(home) / "history"


def write_config(home: Path, text: str) -> Path:
    path = home / "config" / "falconchat" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


class Chat:
    """One REPL process: `falconchat -t 0 --max-new-tokens 16 ARGS…` (a later flag wins).
    `say` sends a line and returns what was shown until the next prompt, without
    styling; `history()` reads the conversation back through /history."""

    def __init__(
        self, home: Path, *args: str, quick: bool = True, env: dict[str, str] | None = None, wait: bool = True
    ):
        self.home = home
        environment = isolated_env(home, PROMPT_TOOLKIT_NO_CPR="1")
        environment.update(env or {})
        self.child = pexpect.spawn(
            FALCONCHAT[0],
            [*FALCONCHAT[1:], *(QUICK if quick else ()), *args],
            cwd=str(home),
            env=environment,
            timeout=TIMEOUT,
            encoding="utf-8",
            dimensions=(30, 120),
        )
        self.raw = ""
        self.banner = self.wait_for_prompt() if wait else ""

    # ---- the prompt ------------------------------------------------------------------

    def wait_for_prompt(self) -> str:
        self.child.expect_exact(PROMPT_OPENS)
        self.raw = self.child.before  # with styling, for tests that look at it
        self.child.expect_exact(PROMPT)
        return plain(self.raw)

    def say(self, text: str) -> str:
        """Type a line and press Enter; return what was shown until the next prompt."""
        self.child.send(text)
        self.child.send(ENTER)
        return self.wait_for_prompt()

    def type(self, *keys: str) -> None:
        """Send keys without waiting for anything (inside a message being written)."""
        for key in keys:
            self.child.send(key)

    def keys(self, *keys: str) -> str:
        """Send keys (the last one should send the message); return what the next prompt shows before it."""
        for key in keys:
            self.child.send(key)
        return self.wait_for_prompt()

    # ---- the conversation through /history -------------------------------------------

    def history(self, model: str | tuple[str, ...] = MODEL) -> list[tuple[str, str]]:
        return parse_history(self.say("/history"), model)

    def reply_to(self, text: str, model: str = MODEL) -> str:
        """Say `text`; return the reply recorded for it (its words are the model's choice, not a contract)."""
        self.say(text)
        user, reply = self.history(model)[-1]
        assert user == text, (user, text)
        return reply

    # ---- leaving ---------------------------------------------------------------------

    def ctrl_d(self) -> tuple[int | None, str]:
        """Leave with Ctrl-D; return the exit status and what was printed on the way out."""
        self.child.sendcontrol("d")
        return self.wait_exit()

    def wait_exit(self) -> tuple[int | None, str]:
        self.child.expect(pexpect.EOF)
        said = plain(self.child.before)
        self.child.close()
        status = self.child.exitstatus if self.child.exitstatus is not None else -(self.child.signalstatus or 0)
        return status, said

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


def parse_history(shown: str, model: str | tuple[str, ...] = MODEL) -> list[tuple[str, str]]:
    """/history's output as [(user, reply)]: a line starting "N. You: " opens a message,
    one starting "MODEL: " (or "MODEL (cut): …") opens its reply; lines go with the
    entry above them. Each reply is labelled with the model that wrote it: after /model,
    pass every name the conversation has used."""
    turns: list[list[str]] = []
    current = None
    names = "|".join(re.escape(name) for name in ((model,) if isinstance(model, str) else model))
    reply_start = re.compile(rf"^(?:{names})( \((cut|incomplete|length limit)\))?: ?")
    lines = shown.split("\n")
    # The first line is the echo of "/history" itself.
    for line in lines[1:] if lines and "/history" in lines[0] else lines:
        opening = re.match(r"^\d+\. You: ", line)
        if opening:
            turns.append([line[opening.end() :], ""])
            current = 0
        elif turns and reply_start.match(line) and current == 0:
            turns[-1][1] = reply_start.sub("", line, count=1)
            current = 1
        elif turns and current is not None:
            turns[-1][current] += "\n" + line
    return [(user.strip(), reply.strip()) for user, reply in turns]


@pytest.fixture
def chats(tmp_path):
    """Start REPL processes in one home: chats(*args, env=…) → Chat; all are ended afterwards."""
    started: list[Chat] = []

    def start(*args: str, home: Path = tmp_path, wait: bool = True, **kwargs) -> Chat:
        chat = Chat(home, *args, wait=False, **kwargs)
        started.append(chat)  # ended afterwards even if it never shows a prompt
        if wait:
            chat.banner = chat.wait_for_prompt()
        return chat

    yield start
    for chat in started:
        chat.close()


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


@pytest.fixture
def terminals(tmp_path):
    """Start REPL processes in tmux (a terminal that answers cursor-position requests, so the
    bottom toolbar is drawn): terminals(*args, env=…, width=…, height=…) → TmuxTerminal."""
    from tmux_terminal import TmuxTerminal, have_tmux

    if not have_tmux():
        pytest.skip("tmux is not installed")
    started: list[TmuxTerminal] = []

    def start(*args: str, home: Path = tmp_path, **kwargs) -> TmuxTerminal:
        terminal = TmuxTerminal(home, *args, **kwargs)
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.close()

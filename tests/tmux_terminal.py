"""A real terminal for the REPL: tmux, driven with send-keys and read with capture-pane.

tmux answers cursor-position requests (ESC[6n) as every real terminal does, so
prompt-toolkit draws the bottom toolbar here — unlike a bare pseudo-terminal with
PROMPT_TOOLKIT_NO_CPR=1, which hides the toolbar and every bug in it. Each
`TmuxTerminal` runs its own tmux server (its own socket), isolated from the others.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from processes import FALCONCHAT, isolated_env

WAIT_S = 60.0  # generous: the machine may be busy with other test runs


def have_tmux() -> bool:
    return shutil.which("tmux") is not None


class TmuxTerminal:
    """`falconchat ARGS` in a tmux window of `width`×`height`; the pane stays after the
    process ends, so its last screen and exit status can be read."""

    def __init__(
        self,
        home: Path,
        *args: str,
        env: dict[str, str] | None = None,
        width: int = 100,
        height: int = 30,
        stdout: Path | None = None,
    ):
        """`stdout`: a file that takes the program's standard output (as `| tee FILE` would),
        its input and standard error staying on the terminal."""
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.name = f"fc-{uuid.uuid4().hex[:12]}"
        self.pid_file = home / f"{self.name}.pid"
        environment = isolated_env(home, **(env or {}))
        environment.pop("PROMPT_TOOLKIT_NO_CPR", None)
        environment.pop("TERM", None)  # tmux's own
        # A program learns a terminal's size from the terminal. The test runner's readline
        # exports COLUMNS=80 and LINES=24, which Rich would take over the window's own size.
        for name in ("COLUMNS", "LINES"):
            if name not in (env or {}):
                environment.pop(name, None)
        script = home / f"{self.name}.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in environment.items() if k.isidentifier())
        self.status_file = home / f"{self.name}.status"
        script.write_text(
            exports
            + f"cd {shlex.quote(str(home))}\necho $$ > {shlex.quote(str(self.pid_file))}\n"
            # Ctrl-C goes to the whole foreground group: the shell waits it out (a trap, not an
            # ignore, so falconchat still gets the default SIGINT) to write the exit status.
            + "trap true INT\n"
            + " ".join(shlex.quote(a) for a in [*FALCONCHAT, *args])
            + (f" > {shlex.quote(str(stdout))}" if stdout is not None else "")
            + f"\necho $? > {shlex.quote(str(self.status_file))}\n"
        )
        config = home / f"{self.name}.conf"
        config.write_text("set -g remain-on-exit on\nset -g history-limit 5000\nset -g status off\n")
        self._tmux(
            "-f", str(config), "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), f"sh {script}"
        )
        self.pid = self._read_pid()

    # ---- tmux --------------------------------------------------------------------------

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _read_pid(self) -> int:
        """falconchat's own process: the child of the shell that wrote its pid (the shell stays,
        to write the exit status)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            shell = self.pid_file.read_text().strip() if self.pid_file.exists() else ""
            if shell:
                children = Path(f"/proc/{shell}/task/{shell}/children")
                found = children.read_text().split() if children.exists() else []
                if found:
                    return int(found[0])
            time.sleep(0.05)
        raise AssertionError("the terminal's process never started")

    # ---- reading -------------------------------------------------------------------------

    def screen(self) -> str:
        """The visible screen, as text (long lines as the terminal wrapped them)."""
        return self._tmux("capture-pane", "-p", "-t", "t")

    def scrollback(self, *, joined: bool = False) -> str:
        """Everything the terminal holds; `joined`: lines the terminal wrapped joined back."""
        return self._tmux("capture-pane", "-p", *(["-J"] if joined else []), "-S", "-", "-t", "t")

    def wait_for(self, what: str | Callable[[str], bool], timeout: float = WAIT_S, *, whole: bool = False) -> str:
        """Wait until the screen (or the whole scrollback) shows `what`; return it."""
        test = (lambda s: what in s) if isinstance(what, str) else what
        deadline = time.monotonic() + timeout
        while True:
            shown = self.scrollback() if whole else self.screen()
            if test(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"not shown within {timeout:g}s: {what!r}; the screen:\n{shown}")
            time.sleep(0.1)

    def prompt_line(self) -> str:
        """The last line that starts with the prompt."""
        lines = [line for line in self.screen().splitlines() if line.startswith(">>>")]
        return lines[-1].rstrip() if lines else ""

    def at_prompt(self, screen: str | None = None) -> bool:
        """An empty prompt is open: the last prompt line is bare and nothing but the toolbar follows."""
        lines = (self.screen() if screen is None else screen).rstrip("\n").split("\n")
        prompts = [i for i, line in enumerate(lines) if line.startswith(">>>")]
        if not prompts or lines[prompts[-1]].rstrip() != ">>>":
            return False
        return not any(line.strip() for line in lines[prompts[-1] + 1 : -1])

    def wait_prompt(self, timeout: float = WAIT_S) -> str:
        """Wait for an empty prompt (keys sent before it opens may be lost, as for a user)."""
        return self.wait_for(self.at_prompt, timeout)

    def bottom_line(self) -> str:
        """The last line of the window: where the toolbar is drawn."""
        return self.screen().rstrip("\n").split("\n")[-1]

    # ---- typing ------------------------------------------------------------------------

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "t", "-l", text)

    def keys(self, *names: str) -> None:
        """tmux key names: Enter, C-c, C-d, Up, Tab…"""
        self._tmux("send-keys", "-t", "t", *names)

    def say(self, text: str) -> None:
        self.type(text)
        self.keys("Enter")

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    # ---- the process -----------------------------------------------------------------------

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        # A zombie (ended, not yet reaped by tmux) counts as ended; so does one reaped just now.
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.split(")")[-1].split()[0] != "Z"

    def wait_exit(self, timeout: float = 20) -> int:
        """Wait for the process to end; its exit status as tmux saw it."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"still running {timeout:g}s later; the screen:\n{self.screen()}")
            time.sleep(0.1)
        for _ in range(100):  # the shell writes it as the process ends
            text = self.status_file.read_text().strip() if self.status_file.exists() else ""
            if text:
                return int(text)
            time.sleep(0.1)
        raise AssertionError(f"no exit status; the screen:\n{self.screen()}")

    def vanish(self) -> None:
        """Close the terminal as a user closing the window does: the process gets SIGHUP
        and its terminal is gone."""
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=30)

    def close(self) -> None:
        self.vanish()
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

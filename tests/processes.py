"""Running the real `falconchat` as a separate process, isolated from the user's settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

FALCONCHAT = [sys.executable, "-m", "falconchat"]
# What lets root read any file and list any folder: dropped to test "permission denied" as root.
ROOT_READS = "-dac_override,-dac_read_search"


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """The current environment without any falconchat or tutorial settings, and a
    user config dir of its own, so nothing on this machine leaks into a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FALCONCHAT_", "HF_API_"))}
    env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def without_root_reads(command: list[str]) -> list[str]:
    """`command` as a process that file permissions apply to: as root (tests run as root here and
    in CI) without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv, util-linux), so a file with
    mode 0 is unreadable to it; as any other user, `command` unchanged."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:  # never a skip: the permission tests would then test nothing
        raise RuntimeError("tests run as root need setpriv (util-linux) to test file permissions")
    return [setpriv, f"--inh-caps={ROOT_READS}", f"--bounding-set={ROOT_READS}", *command]


def falconchat(
    *args: str,
    cwd: Path,
    env: dict[str, str],
    input: bytes | None = None,
    timeout: float = 120,
    unprivileged: bool = False,
):
    """Run falconchat to its end; `unprivileged`: see `without_root_reads`."""
    command = [*FALCONCHAT, *args]
    return subprocess.run(
        without_root_reads(command) if unprivileged else command,
        cwd=cwd,
        env=env,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


def one_error_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("falconchat: error: "), text
    return lines[0]


# The words of the line shown while the first token is awaited (`⠋ waiting for the model 0s ·
# Ctrl-C stops · smollm2 (bundled, local)`), which are not the reply's.
WAITING_WORDS = {"waiting", "for", "the", "model", "Ctrl", "stops", "smollm2", "bundled", "local"}


def expect_reply_start(child) -> None:
    """Wait until the reply has started: a word, not letters inside an escape code, nor a word
    of the waiting line (call it once the prompt has closed)."""
    while True:
        child.expect(r"[A-Za-z0-9]{3,}")
        if child.after not in WAITING_WORDS:
            return

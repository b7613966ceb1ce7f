"""Measuring real processes for `bench`: time to first byte, wall time, a command on a
pseudo-terminal, a REPL reply's decode rate, and the peak memory of an interactive session."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from falconchat.text import sanitize

STATS = re.compile(r"(\d+) tokens in ([\d.]+)s .*first token ([\d.]+)s")


class PeerFailed(Exception):
    """A baseline's process ended before it could be measured (its row says why, the rest go on)."""

    def __init__(self, message: str, crashed: bool = False):
        super().__init__(message)
        self.crashed = crashed  # killed by a signal (SIGILL, SIGSEGV…), not an exit of its own


def exit_said(name: str, code: int) -> str:
    """ "llm exited 132 (SIGILL)": a process's end as a shell reports it (128 + a signal's number)."""
    if code < 0:
        try:
            return f"{name} exited {128 - code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"{name} exited {128 - code}"
    return f"{name} exited {code}"


def falconchat_command() -> list[str]:
    script = Path(sys.executable).with_name("falconchat")
    return [str(script)] if script.exists() else [sys.executable, "-m", "falconchat"]


def quiet_env(home: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with no user settings, history or logs: each tool starts as on a fresh machine."""
    env = {k: v for k, v in environ.items() if not k.startswith(("FALCONCHAT_", "HF_API_"))}
    env.update(
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        LLM_USER_PATH=str(home / "llm"),
        TERM="xterm-256color",
        FALCONCHAT_NO_HISTORY="1",
    )
    return env


def first_byte_s(command: list[str], env: dict[str, str], name: str | None = None, stdin: bytes | None = None) -> float:
    """Seconds from starting the process to the first byte on its (piped) stdout; PeerFailed,
    saying how it ended (and its last line on stderr), where it ends with nothing printed.
    `stdin`: written into a real pipe as the process reads it (as `cat file |` would), from the
    start of the timing; without it, stdin is /dev/null."""

    name = name or Path(command[0]).name
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert proc.stdout is not None
        writer = None if stdin is None else _feed(proc, stdin)
        try:
            if proc.stdout.read(1):
                return time.perf_counter() - started
            code = proc.wait(timeout=30)
        finally:
            proc.kill()
            proc.wait()
            if writer is not None:
                writer.join()
            proc.stdout.close()
        errors.seek(0)
        last = [line for line in errors.read()[-2000:].decode("utf-8", "replace").splitlines() if line.strip()]
    said = exit_said(name, code) if code else f"{name} printed nothing"
    raise PeerFailed(f"{said}: {sanitize(last[-1])[:160]}" if last and code > 0 else said, crashed=code < 0)


def _feed(proc: subprocess.Popen, data: bytes) -> threading.Thread:
    """Write `data` to the process's stdin and close it, beside the reading (a pipe holds 64 KB)."""

    def write() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(data)
        except BrokenPipeError:  # it ended (or was killed) before reading it all
            pass
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def wall_s(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - started


def decode_rate(stderr: str) -> float:
    """Decode tokens/s from `-v`'s stats line: the tokens after the first, over their time."""
    match = STATS.search(stderr)
    if not match:
        raise RuntimeError(f"no stats line in: {stderr[-300:]!r}")
    tokens, total, first = int(match[1]), float(match[2]), float(match[3])
    return (tokens - 1) / (total - first)


def run_piped(command: list[str], env: dict[str, str]) -> str:
    """Run with stdout piped; return stderr."""
    result = subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    return result.stderr


def run_on_terminal(command: list[str], env: dict[str, str], rows: int = 40, cols: int = 120) -> str:
    """Run with stdout on a pseudo-terminal (drained as a terminal would); return stderr."""
    master, slave = pty.openpty()
    _set_size(slave, rows, cols)
    proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        while _drain(master, 0.5) or proc.poll() is None:
            pass
        assert proc.stderr is not None
        err = proc.stderr.read().decode("utf-8", "replace")
        if proc.wait() != 0:
            raise RuntimeError(f"{command[0]} failed: {err[-300:]!r}")
        return err
    finally:
        os.close(master)


def peak_memory_mb(
    command: list[str], env: dict[str, str], prompt_ready: bytes, message: str, timeout: float = 120.0, name: str = ""
) -> float:
    """Start an interactive chat on a pseudo-terminal, have one exchange, and read the
    process's peak resident memory (VmHWM) before leaving; PeerFailed if the chat ends first."""
    pid, master = pty.fork()
    if pid == 0:  # the child: become the chat
        os.execvpe(command[0], command, env)
    ended = None
    try:
        _set_size(master, 40, 120)
        _wait_for(master, prompt_ready, timeout)
        os.write(master, message.encode() + b"\r")
        _wait_for(master, prompt_ready, timeout)
        return _vm_hwm_mb(pid)
    except ChatEnded:
        _, status = os.waitpid(pid, 0)
        ended = os.waitstatus_to_exitcode(status)
        raise PeerFailed(exit_said(name or Path(command[0]).name, ended), crashed=ended < 0) from None
    finally:
        if ended is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        os.close(master)


CPR_REQUEST = b"\x1b[6n"  # prompt-toolkit asks where the cursor is before drawing the toolbar
PROMPT_OPENS = b"\x1b[?2004h"


def repl_reply_rate(command: list[str], env: dict[str, str], message: str, timeout: float = 300.0) -> float:
    """Decode tokens/s of one REPL reply (`command` must include --verbose), on a pseudo-terminal
    that answers cursor-position requests as a real terminal does (so the bottom toolbar is drawn
    and redrawn, as for a user)."""
    env = {k: v for k, v in env.items() if k != "PROMPT_TOOLKIT_NO_CPR"}
    pid, master = pty.fork()
    if pid == 0:  # the child: become the chat
        os.execvpe(command[0], command, env)
    try:
        _set_size(master, 40, 120)
        _read_answering_cpr(master, lambda seen: PROMPT_OPENS in seen, timeout)
        os.write(master, message.encode() + b"\r")
        seen = _read_answering_cpr(master, lambda seen: STATS.search(seen.decode("utf-8", "replace")), timeout)
        os.write(master, b"\x04")  # Ctrl-D: leave
        return decode_rate(seen.decode("utf-8", "replace"))
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(master)


def _read_answering_cpr(fd: int, done: Callable[[bytes], object], timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while not done(seen):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out on a terminal; saw {seen[-200:]!r}")
        readable, _, _ = select.select([fd], [], [], 0.5)
        if not readable:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            raise RuntimeError(f"the chat ended early; saw {seen[-200:]!r}") from None
        os.write(fd, b"\x1b[10;1R" * chunk.count(CPR_REQUEST))
        seen += chunk
    return seen


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc (not Linux?)")


class ChatEnded(RuntimeError):
    """The process on the terminal ended (its side closed) before what was awaited appeared."""


def _wait_for(fd: int, marker: bytes, timeout: float) -> None:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {marker!r}; saw {seen[-200:]!r}")
        readable, _, _ = select.select([fd], [], [], 0.5)
        if readable:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise ChatEnded(f"the chat ended early; saw {seen[-200:]!r}")
            seen += chunk


def _drain(fd: int, wait: float) -> bool:
    readable, _, _ = select.select([fd], [], [], wait)
    if not readable:
        return False
    try:
        return bool(os.read(fd, 65536))
    except OSError:
        return False


def _set_size(fd: int, rows: int, cols: int) -> None:
    import fcntl  # noqa: PLC0415 (POSIX only)
    import termios  # noqa: PLC0415 (POSIX only)

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

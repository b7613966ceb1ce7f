"""What every reliability scenario shares: running real `falconchat` processes (pipes
and a pseudo-terminal), the checks they must pass, and the tally of the run.

Each check both asserts and counts, so the figures in docs/reliability.md
(outputs checked, tracebacks, leaked sequences, canary hits) come from the run
itself: see `tally` and the summary conftest.py prints at the end.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: processes.py, tgi_endpoint.py
from processes import FALCONCHAT, isolated_env

# Canary secrets: any of these anywhere in an output or a file is a leak.
CANARY_KEY = "hf_CANARYcanary0123456789abcdefCANARY"  # HF_API_KEY, the endpoint's token
CANARY_SERVE_KEY = "serve-CANARY-9f8e7d6c5b4a-key"  # `serve --api-key`
CANARY_URL_PASSWORD = "urlpassCANARY42"  # user:password@ in an endpoint URL
CANARIES = (CANARY_KEY, CANARY_SERVE_KEY, CANARY_URL_PASSWORD)

tally: Counter = Counter()  # outputs_checked, tracebacks, leaked_sequences, canary_hits, payloads


# ---- running falconchat --------------------------------------------------------------------


@dataclass
class Ran:
    code: int
    out: str
    err: str
    seconds: float


def run(
    home: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, timeout: float = 60
) -> Ran:
    """`falconchat ARGS` with stdout and stderr piped, isolated in `home`; stdin empty unless given."""
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        [*FALCONCHAT, *args],
        cwd=home,
        env=isolated_env(home, **(env or {})),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    return Ran(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - started,
    )


def popen(home: Path, *args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(
        [*FALCONCHAT, *args],
        cwd=home,
        env=isolated_env(home, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


class Terminal:
    """`falconchat ARGS` on a real pseudo-terminal (80×24 unless told); `screen` is every byte it wrote."""

    PROMPT_OPENS = "\x1b[?2004h"  # prompt-toolkit turns bracketed paste on as each prompt opens

    def __init__(
        self,
        home: Path,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        command: list[str] | None = None,
    ):
        home.mkdir(parents=True, exist_ok=True)
        environment = isolated_env(home, PROMPT_TOOLKIT_NO_CPR="1", **(env or {}))
        argv = command or [*FALCONCHAT, *args]
        self._log = io.StringIO()
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            cwd=str(home),
            env=environment,
            timeout=timeout,
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(24, 80),
        )
        self.child.logfile_read = self._log

    @property
    def screen(self) -> str:
        return self._log.getvalue()

    def prompt(self) -> str:
        """Wait for the REPL's next prompt; return the plain text shown since the last one."""
        self.child.expect_exact(self.PROMPT_OPENS)
        before = self.child.before
        self.child.expect_exact(">>>")
        return plain(before)

    def drain(self, quiet_s: float = 1.0) -> None:
        """Read what is pending until the terminal has been quiet for `quiet_s` (after key storms,
        each of which may redraw the prompt)."""
        while True:
            try:
                self.child.read_nonblocking(65536, timeout=quiet_s)
            except pexpect.TIMEOUT:
                return

    def say(self, line: str) -> str:
        self.child.send(line + "\r")
        return self.prompt()

    def finish(self, timeout: float = 60) -> int:
        """Wait for the process to end; its exit status (or 128 + signal)."""
        self.child.expect(pexpect.EOF, timeout=timeout)
        self.child.close()
        if self.child.exitstatus is not None:
            return self.child.exitstatus
        return 128 + (self.child.signalstatus or 0)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


_STYLE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[=>]|\r")


def plain(screen: str) -> str:
    """What a person reads: the screen without falconchat's own styling and cursor moves."""
    return _STYLE.sub("", screen)


# ---- the checks ------------------------------------------------------------------------------


def no_traceback(*texts: str) -> None:
    for text in texts:
        tally["outputs_checked"] += 1
        if "Traceback (most recent call last)" in text:
            tally["tracebacks"] += 1
            raise AssertionError("a traceback was shown:\n" + text[-3000:])


def no_canary(text: str, where: str) -> None:
    tally["canary_checks"] += 1
    hits = [c for c in CANARIES if c in text]
    if hits:
        tally["canary_hits"] += len(hits)
        raise AssertionError(f"secret {hits[0]!r} leaked into {where}")


def files_without_canary(root: Path) -> list[Path]:
    """Check every file under `root` (as bytes); return them."""
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
    for path in files:
        no_canary(path.read_bytes().decode("utf-8", "replace"), str(path))
    return files


_PIPE_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def no_escapes(text: str, where: str = "piped output") -> None:
    """Piped output carries no escape code or control character at all (tab and newline aside)."""
    tally["outputs_checked"] += 1
    bad = _PIPE_UNSAFE.search(text)
    if bad:
        tally["leaked_sequences"] += 1
        raise AssertionError(
            f"{bad.group()!r} in {where} at {bad.start()}: {text[max(0, bad.start() - 40) : bad.start() + 40]!r}"
        )


# On a terminal falconchat's own output is styling (SGR) and the cursor moves, line erases
# and modes that Rich's live view and prompt-toolkit use. Anything else is a leak.
_SEQUENCE = re.compile(
    r"\x1b\[(?P<csi>[0-?]*[ -/]*[@-~])"  # CSI
    r"|(?P<string>\x1b[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\)?)"  # OSC, DCS, APC, PM, SOS
    r"|(?P<esc>\x1b[ -/]*[0-~])"  # other ESC sequences
    r"|(?P<control>[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069])"
    r"|(?P<lone>\x1b)"
    r"|(?P<cr>\r(?![\n\r\x1b]|\Z))"  # a carriage return that overwrites the line (own ones end it or erase it)
)
_OWN_CSI = re.compile(
    r"^(?:[\d;]*m"  # styling
    r"|1?A|(?:\d?\d)?[CDG]|0?J|[02]?K"  # a line up, moves along the 80-column line, erase down, erase the line
    r"|\?(?:25|2004|1|7|12|1000|1003|1006|1015)[hl])$"  # cursor, bracketed paste, keypad, wrap, blink, mouse
)
# SGR values falconchat never uses but an attacker would: blink, conceal, and the exact colours in the corpus.
_FOREIGN_SGR = {5, 6, 8}
_FOREIGN_COLOURS = {(38, 2, 13, 37, 42), (48, 5, 201)}


def _foreign_sgr(body: str) -> bool:
    try:
        params = [int(p) if p else 0 for p in body[:-1].split(";")]
    except ValueError:
        return True
    i = 0
    while i < len(params):
        if params[i] in (38, 48, 58):  # a colour: 5;N or 2;R;G;B follows
            size = 3 if params[i + 1 : i + 2] == [5] else 5
            if tuple(params[i : i + size]) in _FOREIGN_COLOURS:
                return True
            i += size
            continue
        if params[i] in _FOREIGN_SGR:
            return True
        i += 1
    return False


_OWN_ESC = {"\x1b=", "\x1b>"}  # keypad application mode on/off (prompt-toolkit)


def screen_leaks(screen: str) -> list[str]:
    """Control sequences and characters on `screen` that are not falconchat's own styling."""
    leaks = []
    for found in _SEQUENCE.finditer(screen):
        if found.group("csi") is not None:
            body = found.group("csi")
            if _OWN_CSI.match(body) and not (body.endswith("m") and _foreign_sgr(body)):
                continue
        elif found.group("esc") is not None and found.group() in _OWN_ESC:
            continue
        leaks.append(found.group())
    return leaks


def no_leaks(screen: str, where: str = "the terminal") -> None:
    tally["outputs_checked"] += 1
    leaks = screen_leaks(screen)
    if leaks:
        tally["leaked_sequences"] += len(leaks)
        raise AssertionError(f"{len(leaks)} foreign control sequences reached {where}: {leaks[:10]!r}")


def one_error_line(err: str, *names: str) -> str:
    """stderr is exactly one `falconchat: error: …` line (no traceback) naming each of `names`."""
    no_traceback(err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("falconchat: error: "), err
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]

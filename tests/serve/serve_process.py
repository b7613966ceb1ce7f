"""`falconchat serve` as a real process: started on a free port, its stderr log collected as it comes."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from processes import FALCONCHAT, isolated_env

READY = re.compile(r"^falconchat serve: .+ on (http://\S+) \(Ctrl-C to stop\)$")
CANCELLED = re.compile(r"generation cancelled after (\d+) tokens \((\d+) after the client left\)")
REQUEST_LINE = re.compile(r"^(GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS) (\S+) (\d{3}) (\d+) tokens (\d+\.\d\d)s( \w+)?$")
START_TIMEOUT_S = 60.0  # loading the model on a busy machine


class ServeProcess:
    """One `falconchat serve --port 0 ARGS...`; `url` once it listens, `lines` its stderr so far."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None):
        home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [*FALCONCHAT, "serve", "--port", "0", *args],
            cwd=home,
            env=isolated_env(home, **(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._collect, name="serve-stderr", daemon=True)
        self._reader.start()
        self._stopped = False
        ready = self.wait_for(READY, timeout=START_TIMEOUT_S, what="the server to listen")
        self.url: str = ready.group(1)

    def _collect(self) -> None:
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def mark(self) -> int:
        """A position in the log: `wait_for(..., since=mark)` looks only at lines after it."""
        with self._changed:
            return len(self.lines)

    def wait_for(self, pattern: re.Pattern | str, *, since: int = 0, timeout: float = 10.0, what: str = ""):
        """The first match of `pattern` in a log line after `since`, waiting up to `timeout` seconds for it."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    if found := regex.search(line):
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._changed.wait(min(left, 0.5))
        raise AssertionError(f"waited {timeout:g}s for {what or regex.pattern!r}; the server's log:\n" + self.log)

    def request_line(self, path: str, *, since: int, timeout: float = 10.0) -> re.Match:
        """The log line of the next request to `path` after `since`."""
        return self.wait_for(
            rf"^[A-Z]+ {re.escape(path)} \d{{3}} \d+ tokens",
            since=since,
            timeout=timeout,
            what=f"the log line of a request to {path}",
        )

    def stop(self) -> str:
        """Ctrl-C; the server must exit 0 with no traceback. Returns the whole log (checked once)."""
        if self._stopped:
            return self.log
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the server did not stop within 20 s of SIGINT; its log:\n" + self.log) from None
        self._reader.join(timeout=5)
        log = self.log
        assert "Traceback" not in log, log
        assert code == 0, f"exit code {code}; the server's log:\n{log}"
        return log

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running(home: Path, *args: str, env: dict[str, str] | None = None):
    """A `falconchat serve` for the duration of the block; it must stop cleanly on Ctrl-C."""
    server = ServeProcess(home, *args, env=env)
    try:
        yield server
    except BaseException:
        server.kill()
        raise
    server.stop()


def parse_request_line(line: str) -> tuple[str, str, int, int, str]:
    """(method, path, status, tokens, outcome) of a request's log line."""
    found = REQUEST_LINE.match(line)
    assert found, f"not a request log line: {line!r}"
    method, path, status, tokens, _, outcome = found.groups()
    return method, path, int(status), int(tokens), (outcome or "").strip()

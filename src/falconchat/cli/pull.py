"""`falconchat models pull NAME` and `--pull`: a Hub model into the Hub's cache, with a progress
bar on a terminal (size, speed, time left) and plain lines in a pipe."""

from __future__ import annotations

import threading
from collections.abc import Callable

from falconchat.backends.hub import Plan, find_cached, plan, pull
from falconchat.backends.hub_names import HubName, is_hub_name, parse_hub_name
from falconchat.config import user_config_dir
from falconchat.config_env import read_dotenv
from falconchat.environment import Environment
from falconchat.errors import ExitCode, UsageError
from falconchat.text import sanitize


def pull_command(env: Environment, text: str) -> int:
    if not is_hub_name(text):
        raise UsageError(f"models pull takes a Hub name, hf:OWNER/REPO[:QUANT] (got {text!r})")
    name = parse_hub_name(text)
    fetch(env, name)
    return ExitCode.OK


def fetch(env: Environment, name: HubName) -> None:
    """Choose, say what was chosen, download with progress; a whole cached file is not fetched again."""
    chosen = plan(name, hub_token(env))
    _say(env, f"{name}: {chosen.file} ({chosen.why}), {_mb(chosen.size)}")
    try:
        path = pull(chosen, _progress_for(env, chosen))
    except KeyboardInterrupt:
        _say(env, "interrupted: what was downloaded is kept; the same command resumes it")
        raise
    _say(env, f"pulled {name}: {sanitize(str(path))}")


def ensure_pulled(env: Environment, model_path: str | None) -> None:
    """`--pull`: fetch a Hub model that is not in the cache yet; anything else is left alone."""
    if is_hub_name(model_path):
        name = parse_hub_name(model_path)  # type: ignore[arg-type]
        if find_cached(name) is None:
            fetch(env, name)


def ask_to_pull(env: Environment, model_path: str | None, answer: Callable[[str], str]) -> None:
    """The chat on a terminal: a Hub model not yet pulled is offered once (`[Y/n]`); `answer`
    asks the question and reads the reply (with the terminal echoing it)."""
    if not is_hub_name(model_path) or env.stdin is None or not env.stdin.isatty():
        return
    name = parse_hub_name(model_path)  # type: ignore[arg-type]
    if find_cached(name) is not None:
        return
    chosen = plan(name, hub_token(env))
    reply = answer(f"Download {sanitize(name.repo)}/{sanitize(chosen.file)}, {_mb(chosen.size)}? [Y/n] ")
    if reply.strip().lower() not in ("", "y", "yes"):
        return  # opening the model then says which command pulls it
    _say(env, f"{chosen.file} ({chosen.why})")
    pull(chosen, _progress_for(env, chosen))


def hub_token(env: Environment) -> str | None:
    """HF_TOKEN (or the Hub's stored login) as the Hub client reads them; else HF_API_KEY, the
    name the classic tutorial gives it, from the environment or a .env file. Never shown."""
    if env.environ.get("HF_TOKEN"):
        return None
    dotenv = read_dotenv(env.environ.get("FALCONCHAT_ENV_FILE"), env.cwd, user_config_dir(env.environ))
    return env.environ.get("HF_API_KEY") or dotenv.values.get("HF_API_KEY") or None


def _progress_for(env: Environment, chosen: Plan):
    return _BarProgress(env) if env.draws_on(env.stderr) else _LineProgress(env)


class _LineProgress:
    """In a pipe: a line at each tenth of a file."""

    def __init__(self, env: Environment):
        self.env = env
        self.shown: dict[str, int] = {}

    def __call__(self, file: str, done: int, total: int | None) -> None:
        if not total:
            return
        tenth = min(done * 10 // total, 10)
        if tenth > self.shown.get(file, -1):
            self.shown[file] = tenth
            _say(self.env, f"{sanitize(file)}: {tenth * 10}% of {_mb(total)}")


class _BarProgress:
    """On a terminal: Rich's bar with size, speed and time left, on stderr."""

    def __init__(self, env: Environment):
        from rich.progress import (  # noqa: PLC0415 (heavy: rich)
            BarColumn,
            DownloadColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from falconchat.render import make_console  # noqa: PLC0415 (per-command dispatch)

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=make_console(env.stderr, env),
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def __call__(self, file: str, done: int, total: int | None) -> None:
        with self.lock:
            if file not in self.tasks:
                self.progress.start()
                self.tasks[file] = self.progress.add_task(sanitize(file.rsplit("/", 1)[-1]), total=total)
            self.progress.update(self.tasks[file], completed=done)
            if total and done >= total:
                self.progress.stop()


def _say(env: Environment, line: str) -> None:
    env.stderr.write(line + "\n")
    env.stderr.flush()


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"

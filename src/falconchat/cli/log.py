"""The conversation log as a command opens it: on or off (--log/--no-log, FALCONCHAT_LOG, `log`
in the config, `falconchat logs off`), and the conversation `-c` / `--cid` / `--session`
continue, read back from it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from falconchat.environment import Environment
from falconchat.errors import FalconchatError, LogError, UsageError

if TYPE_CHECKING:  # the log's modules (and sqlite3) load when a command uses the log, not for --help
    import sqlite3

    from falconchat.conversation import Conversation
    from falconchat.conversation_log import ConversationLog
    from falconchat.log_store import LogStore
    from falconchat.types import SamplingParams


def log_store(env: Environment) -> LogStore:
    from falconchat.log_store import LogStore, default_path  # noqa: PLC0415 (per-command dispatch)

    return LogStore(default_path(env.environ))


def logging_on(settings, store: LogStore, command: str = "chat") -> bool:
    """A setting given anywhere (flag, environment, .env, config) decides; else `logs off|on`.
    batch logs only when asked (its output file is its record)."""
    from falconchat.log_store import OFF_MARK  # noqa: PLC0415 (per-command dispatch)

    if command == "batch":
        return settings.log is True
    if settings.log is not None:
        return bool(settings.log)
    return not (store.path.parent / OFF_MARK).exists()


@contextmanager
def reading(store: LogStore) -> Iterator[sqlite3.Connection]:
    """The database for reading (never created); its failures are one error line."""
    import sqlite3  # noqa: PLC0415 (per-command dispatch)

    try:
        yield store.connect(create=False)
    except FileNotFoundError:
        raise LogError(f"nothing is logged yet ({store.path} does not exist)") from None
    except sqlite3.Error as exc:
        raise LogError(f"cannot read the log {store.path}: {exc}") from None
    except OSError as exc:
        raise LogError(f"cannot read the log {store.path}: {exc.strerror or exc}") from None


def open_log(
    env: Environment,
    settings,
    flags: dict[str, Any],
    *,
    command: str,
    continue_last: bool = False,
    cid: str | None = None,
    name: str | None = None,
) -> tuple[ConversationLog, Conversation, SamplingParams]:
    """The command's log, the conversation it goes on with and its sampling values: a new
    conversation, or with `-c` the most recent logged one, `--cid ID` that one (a unique id
    prefix, or its name) with the sampling values it last used, where the command line is silent."""
    from falconchat import log_query  # noqa: PLC0415 (per-command dispatch)
    from falconchat.conversation import Conversation  # noqa: PLC0415 (per-command dispatch)
    from falconchat.conversation_log import ConversationLog  # noqa: PLC0415 (per-command dispatch)

    store = log_store(env)
    on = logging_on(settings, store, command)

    def warn(line: str) -> None:
        print(line, file=env.stderr, flush=True)

    conversation = Conversation(system=settings.system)
    log = ConversationLog(store if on else None, warn, command=command, name=name)
    params = settings.sampling
    if continue_last or cid:
        with reading(store) as db:
            target = log_query.resolve(db, cid) if cid else log_query.latest_conversation(db)
            if target is None:
                raise UsageError("no logged conversation to continue (falconchat logs list-conversations)")
            rows = log_query.chain(db, target)
            turns = log_query.turns(db, target)
            name = name or log_query.name_of(db, target)
        last = rows[-1] if rows else None
        system = settings.system if flags.get("system") is not None or last is None else last["system"]
        if last is not None:
            params = _resumed(last["params"], settings.sampling, flags)
        conversation = Conversation(system=system, turns=turns)
        log = ConversationLog(store if on else None, warn, command=command, cid=target, name=name, logged=turns)
    using(log, settings.model)
    return log, conversation, params


def _resumed(logged: str, current: SamplingParams, flags: dict[str, Any]) -> SamplingParams:
    """The sampling values an exchange was logged with, under those the command line gives now."""
    import json  # noqa: PLC0415 (per-command dispatch)

    from falconchat.config_values import SAMPLING_KEYS, parse  # noqa: PLC0415 (per-command dispatch)

    try:
        raw = json.loads(logged or "{}")
    except ValueError:
        return current
    values = {}
    for key in SAMPLING_KEYS:
        if flags.get(key) is None and isinstance(raw, dict) and raw.get(key) is not None:
            try:
                values[key] = parse(key, raw[key], "the log")
            except FalconchatError:
                pass  # a value this version refuses: the current one
    return current.with_changes(**values)


def using(log: ConversationLog, spec) -> None:
    """The backend's kind and endpoint, as the log records them (never a key: no user:password@ or query)."""
    from falconchat.text import safe_url  # noqa: PLC0415 (per-command dispatch)

    log.backend = spec.backend
    log.endpoint = safe_url(spec.endpoint).rstrip("/") if spec.endpoint else None


def logged_name(env: Environment, settings, name: str) -> bool:
    """Whether the log (when on) has a conversation called `name`: `--session NAME` opens it."""
    import sqlite3  # noqa: PLC0415 (per-command dispatch)

    from falconchat import log_query  # noqa: PLC0415 (per-command dispatch)

    store = log_store(env)
    if not logging_on(settings, store) or not store.exists():
        return False
    try:
        return log_query.conversation_named(store.connect(create=False), name) is not None
    except (sqlite3.Error, OSError, LogError):
        return False  # the session file, as before; writing will warn


def batch_log(env: Environment, settings, flags: dict[str, Any]):
    """`batch --log`: a maker of one logged conversation per item (each worker thread opens its
    own connection); None without --log. Its failures warn once for the whole batch."""
    import threading  # noqa: PLC0415 (per-command dispatch)

    from falconchat.conversation_log import ConversationLog  # noqa: PLC0415 (per-command dispatch)

    if flags.get("log") is not True:
        return None
    store_path = log_store(env).path
    warned = threading.Event()

    def warn(line: str) -> None:
        if not warned.is_set():
            warned.set()
            print(line, file=env.stderr, flush=True)

    def make() -> ConversationLog:
        from falconchat.log_store import LogStore  # noqa: PLC0415 (per-command dispatch)

        log = ConversationLog(LogStore(store_path), warn, command="batch")
        using(log, settings.model)
        return log

    return make

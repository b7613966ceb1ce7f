"""The conversation log's file: one SQLite database (WAL, FTS5) in plain tables that `sqlite3`
and Datasette read. This module opens it (private, migrated to SCHEMA_VERSION) and writes to
it; log_query.py reads it. docs/log.md documents the schema; a change to it is a new entry in
MIGRATIONS and a new SCHEMA_VERSION, never an edit of an old entry.

Nothing here prints: a failure is an exception (sqlite3.Error, OSError or LogUnreadable) and
the caller decides what it means (conversation_log.py makes it one warning; `logs` an error)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from falconchat.errors import LogError

SCHEMA_VERSION = 2
FILE_NAME = "log.db"
OFF_MARK = "logs-off"  # `falconchat logs off` leaves this file beside the database
BUSY_TIMEOUT_S = 2.0  # a writer waits this long for another; past it the exchange is not logged

_V1 = """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    created_at TEXT NOT NULL,
    parent_id TEXT REFERENCES conversations(id) ON DELETE SET NULL,
    parent_turn INTEGER
);
CREATE TABLE exchanges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    turn INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    command TEXT NOT NULL,
    prompt TEXT NOT NULL,
    system TEXT NOT NULL DEFAULT '',
    reply TEXT NOT NULL,
    reasoning TEXT,
    model TEXT,
    backend TEXT,
    endpoint TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    first_token_s REAL,
    total_s REAL,
    finish_reason TEXT NOT NULL CHECK (finish_reason IN ('stop', 'length', 'cancelled', 'error')),
    schema TEXT,
    schema_valid INTEGER,
    UNIQUE (conversation_id, turn)
);
CREATE INDEX exchanges_by_time ON exchanges (created_at);
CREATE INDEX conversations_by_parent ON conversations (parent_id);
CREATE VIRTUAL TABLE exchanges_fts USING fts5 (
    prompt, reply, content = 'exchanges', content_rowid = 'id', tokenize = 'unicode61'
);
CREATE TRIGGER exchanges_fts_insert AFTER INSERT ON exchanges BEGIN
    INSERT INTO exchanges_fts (rowid, prompt, reply) VALUES (new.id, new.prompt, new.reply);
END;
CREATE TRIGGER exchanges_fts_delete AFTER DELETE ON exchanges BEGIN
    INSERT INTO exchanges_fts (exchanges_fts, rowid, prompt, reply) VALUES ('delete', old.id, old.prompt, old.reply);
END;
CREATE TRIGGER exchanges_fts_update AFTER UPDATE OF prompt, reply ON exchanges BEGIN
    INSERT INTO exchanges_fts (exchanges_fts, rowid, prompt, reply) VALUES ('delete', old.id, old.prompt, old.reply);
    INSERT INTO exchanges_fts (rowid, prompt, reply) VALUES (new.id, new.prompt, new.reply);
END;
"""

# Version 2 (issue 26): the sources of -f, /file, /run, -a, each content stored once by its
# sha256 however often it is sent; an exchange's prompt then holds the user's words alone.
_V2 = """
CREATE TABLE fragments (
    hash TEXT PRIMARY KEY,
    content TEXT NOT NULL
);
CREATE TABLE exchange_sources (
    exchange_id INTEGER NOT NULL REFERENCES exchanges(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    hash TEXT NOT NULL REFERENCES fragments(hash),
    size INTEGER NOT NULL,
    image INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (exchange_id, position)
);
CREATE INDEX exchange_sources_by_hash ON exchange_sources (hash);
"""

# MIGRATIONS[n] moves a file at user_version n to n + 1 (0: a new, empty file).
MIGRATIONS: list[str] = [_V1, _V2]
assert len(MIGRATIONS) == SCHEMA_VERSION

# How a logged exchange comes back into a conversation (types.Turn.status), and back.
STATUS_OF_FINISH = {"stop": "complete", "length": "length", "cancelled": "cut", "error": "error"}
FINISH_OF_STATUS = {status: finish for finish, status in STATUS_OF_FINISH.items()}

EXCHANGE_COLUMNS = (
    "conversation_id, turn, created_at, command, prompt, system, reply, reasoning, model, backend, endpoint, "
    "params, prompt_tokens, completion_tokens, first_token_s, total_s, finish_reason, schema, schema_valid"
)


class LogUnreadable(LogError):
    """The file is not a falconchat log this version can use (garbage, or a newer schema)."""


@dataclass
class Exchange:
    """One exchange as the log keeps it (the `exchanges` row, less its id, conversation and turn)."""

    prompt: str
    reply: str
    finish_reason: str  # stop | length | cancelled | error
    command: str = "chat"  # chat | ask | batch
    system: str = ""
    reasoning: str | None = None
    model: str | None = None
    backend: str | None = None
    endpoint: str | None = None  # without credentials or query (text.safe_url)
    params: Mapping[str, Any] = field(default_factory=dict)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_s: float | None = None
    total_s: float | None = None
    schema: str | None = None  # --schema / --json-mode: the constraint, as JSON
    schema_valid: bool | None = None
    created_at: str = ""  # ISO 8601, UTC; "" means now
    # The sources before `prompt` in the message sent (sources.Block: name, text, size, image),
    # each text stored once in `fragments`; the prompt is then the user's words alone.
    sources: tuple[Any, ...] = ()


def default_path(environ: Mapping[str, str]) -> Path:
    """Where the log lives: the user's data directory (platformdirs), beside the sessions.
    On Linux and the BSDs XDG_DATA_HOME is read from `environ`, so a command's environment
    (and a test's) decides, as platformdirs decides from the process's."""
    xdg = environ.get("XDG_DATA_HOME", "").strip()
    if xdg and os.path.isabs(xdg) and sys.platform not in ("darwin", "win32", "cygwin"):
        return Path(xdg) / "falconchat" / FILE_NAME
    from platformdirs import user_data_dir  # noqa: PLC0415 (heavy: platformdirs)

    return Path(user_data_dir("falconchat", appauthor=False)) / FILE_NAME


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 letters that sort by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class LogStore:
    """The database file. A connection is opened on first use and kept for the process."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    def connect(self, create: bool = True) -> sqlite3.Connection:
        """The open, migrated database; `create=False` raises FileNotFoundError rather than
        making a new file (reading never creates one)."""
        if self._db is not None:
            return self._db
        if create:
            _private_file(self.path)
        elif not self.path.is_file():
            raise FileNotFoundError(self.path)
        db = sqlite3.connect(self.path.as_uri() + "?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            _migrate(db)
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")  # persistent: readers and one writer at once
            db.execute("PRAGMA synchronous = NORMAL")  # WAL's safe setting: a crash loses no committed row
        except sqlite3.DatabaseError as exc:
            db.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise LogUnreadable(f"{self.path} is not a falconchat log ({exc})") from None
            raise
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): all of it or none of it,
        even if the process is killed in the middle."""
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---- writes ------------------------------------------------------------------------------

    def new_conversation(
        self,
        *,
        name: str | None = None,
        parent: str | None = None,
        parent_turn: int | None = None,
        exchanges: Sequence[Exchange] = (),
    ) -> str:
        """A new conversation holding `exchanges`. A fork names its `parent` and holds only what
        follows the parent's first `parent_turn` exchanges, which it shares (nothing is copied:
        `logs` and search show each exchange once). A `name` another conversation has moves here."""
        cid = new_id()
        with self.writing() as db:
            if name is not None:
                db.execute("UPDATE conversations SET name = NULL WHERE name = ?", (name,))
            db.execute(
                "INSERT INTO conversations (id, name, created_at, parent_id, parent_turn) VALUES (?, ?, ?, ?, ?)",
                (cid, name, now(), parent, parent_turn if parent else None),
            )
            for exchange in exchanges:
                insert_exchange(db, cid, exchange)
        return cid

    def add(self, cid: str, exchange: Exchange) -> int:
        """Append one exchange to a conversation; its id."""
        with self.writing() as db:
            return insert_exchange(db, cid, exchange)

    def extend_last(self, cid: str, exchange: Exchange) -> None:
        """/continue: the conversation's last exchange gets the longer reply and how it ended now."""
        with self.writing() as db:
            db.execute(
                "UPDATE exchanges SET reply = ?, finish_reason = ?, "
                "completion_tokens = coalesce(completion_tokens, 0) + coalesce(?, 0), "
                "total_s = coalesce(total_s, 0) + coalesce(?, 0) "
                "WHERE conversation_id = ? AND turn = (SELECT max(turn) FROM exchanges WHERE conversation_id = ?)",
                (exchange.reply, exchange.finish_reason, exchange.completion_tokens, exchange.total_s, cid, cid),
            )

    def rename(self, cid: str, name: str | None) -> None:
        with self.writing() as db:
            if name is not None:
                db.execute("UPDATE conversations SET name = NULL WHERE name = ? AND id != ?", (name, cid))
            db.execute("UPDATE conversations SET name = ? WHERE id = ?", (name, cid))


def insert_exchange(db: sqlite3.Connection, cid: str, e: Exchange) -> int:
    turn = db.execute(  # a fork's own exchanges are numbered after those it shares with its parent
        "SELECT coalesce((SELECT max(turn) FROM exchanges WHERE conversation_id = ?), "
        "(SELECT parent_turn FROM conversations WHERE id = ?), 0) + 1",
        (cid, cid),
    ).fetchone()
    values = (
        cid,
        turn[0],
        e.created_at or now(),
        e.command,
        e.prompt,
        e.system,
        e.reply,
        e.reasoning,
        e.model,
        e.backend,
        e.endpoint,
        json.dumps(dict(e.params), ensure_ascii=False, default=str),
        e.prompt_tokens,
        e.completion_tokens,
        e.first_token_s,
        e.total_s,
        e.finish_reason,
        e.schema,
        None if e.schema_valid is None else int(e.schema_valid),
    )
    marks = ", ".join("?" * len(values))
    cursor = db.execute(f"INSERT INTO exchanges ({EXCHANGE_COLUMNS}) VALUES ({marks})", values)
    exchange_id = int(cursor.lastrowid or 0)
    for position, source in enumerate(e.sources):
        digest = hashlib.sha256(source.text.encode("utf-8", "surrogatepass")).hexdigest()
        db.execute("INSERT OR IGNORE INTO fragments (hash, content) VALUES (?, ?)", (digest, source.text))
        db.execute(
            "INSERT INTO exchange_sources (exchange_id, position, name, hash, size, image) VALUES (?, ?, ?, ?, ?, ?)",
            (exchange_id, position, source.name, digest, source.size, int(source.image)),
        )
    return exchange_id


def _private_file(path: Path) -> None:
    """The directory 0700 and the file 0600 before SQLite opens it (its -wal and -shm files
    take the database file's mode)."""
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process made it first
            pass


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION, one step at a time, each whole or not at all."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise LogUnreadable(f"the log has schema version {version}; this falconchat reads up to {SCHEMA_VERSION}")
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it
        for step in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[step]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {step + 1}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _statements(script: str) -> Iterator[str]:
    """A script's statements one by one (executescript() would commit the transaction first)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""

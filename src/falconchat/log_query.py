"""Reading the conversation log: a conversation by id prefix or name, its turns, the newest
exchanges, full-text search, the conversations; and the changes made on request: delete
(the text gone from the file), backup. The file and its writes are log_store.py's."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from falconchat.errors import InputError
from falconchat.log_store import EXCHANGE_COLUMNS, STATUS_OF_FINISH, LogStore
from falconchat.sources import Block, with_blocks
from falconchat.text import human_size
from falconchat.types import Turn


@dataclass(frozen=True)
class Filter:
    """Which exchanges `logs` shows; `limit` 0 is all."""

    limit: int = 10
    cid: str | None = None
    model: str | None = None
    since: str | None = None  # ISO 8601, UTC
    query: str | None = None
    latest: bool = False  # with a query: by time, not relevance


def latest_conversation(db: sqlite3.Connection) -> str | None:
    """The conversation written to last: its newest exchange, or its creation (a fork not yet
    answered in, after /fork and leaving)."""
    row = db.execute(
        "SELECT c.id FROM conversations c LEFT JOIN exchanges e ON e.conversation_id = c.id "
        "GROUP BY c.id ORDER BY max(coalesce(max(e.created_at), ''), c.created_at) DESC, c.rowid DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def conversation_named(db: sqlite3.Connection, name: str) -> str | None:
    row = db.execute("SELECT id FROM conversations WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def name_of(db: sqlite3.Connection, cid: str) -> str | None:
    row = db.execute("SELECT name FROM conversations WHERE id = ?", (cid,)).fetchone()
    return row[0] if row else None


def resolve(db: sqlite3.Connection, given: str) -> str:
    """A conversation id from a unique prefix of it (any case), or from its name."""
    text = given.strip()
    if not text:
        raise InputError("an empty conversation id")
    named = conversation_named(db, text)
    if named is not None:
        return named
    prefix = text.upper()
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = db.execute(
        "SELECT id FROM conversations WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 3", (escaped + "%",)
    ).fetchall()
    if not rows:
        raise InputError(f"no logged conversation {given!r} (falconchat logs list-conversations shows them)")
    if len(rows) > 1:
        raise InputError(f"conversation id {given!r} is ambiguous ({rows[0][0]}, {rows[1][0]}, …): give more of it")
    return rows[0][0]


def chain(db: sqlite3.Connection, cid: str) -> list[sqlite3.Row]:
    """A conversation's exchanges, those it shares with the conversation it was forked from first."""
    rows: list[sqlite3.Row] = []
    upto: int | None = None
    seen = set()
    while cid is not None and cid not in seen:  # (a cycle can only be hand-made; it ends here)
        seen.add(cid)
        own = db.execute(
            f"SELECT {_FIELDS} FROM exchanges e JOIN conversations c ON c.id = e.conversation_id "
            "WHERE e.conversation_id = ? ORDER BY e.turn",
            (cid,),
        ).fetchall()
        rows[:0] = [row for row in own if upto is None or row["turn"] <= upto]
        parent = db.execute("SELECT parent_id, parent_turn FROM conversations WHERE id = ?", (cid,)).fetchone()
        if parent is None or parent["parent_id"] is None:
            break
        upto = parent["parent_turn"] if upto is None else min(upto, parent["parent_turn"])
        cid = parent["parent_id"]
    return rows


def turns(db: sqlite3.Connection, cid: str) -> list[Turn]:
    """The conversation as the chat keeps it: an exchange that failed before any text is left out;
    one sent with sources gets their blocks back before its words, from the fragments they share."""
    kept = []
    for row in chain(db, cid):
        if not row["reply"] and row["finish_reason"] == "error":
            continue
        status = STATUS_OF_FINISH[row["finish_reason"]]
        blocks = sources_of(db, row["id"])
        if not blocks:
            kept.append(Turn(row["prompt"], row["reply"], status, row["model"]))  # type: ignore[arg-type]
            continue
        message = with_blocks(row["prompt"], blocks)
        names = tuple(f"{block.name} ({human_size(block.size)})" for block in blocks)
        turn = Turn(message, row["reply"], status, row["model"], attached=names)  # type: ignore[arg-type]
        turn.words_at = len(message) - len(row["prompt"]) if row["prompt"].strip() else len(message)
        kept.append(turn)
    return kept


def sources_of(db: sqlite3.Connection, exchange_id: int) -> list[Block]:
    """The sources an exchange was sent with, in their order, their text from `fragments`."""
    rows = db.execute(
        "SELECT s.name, s.size, s.image, f.content FROM exchange_sources s JOIN fragments f ON f.hash = s.hash "
        "WHERE s.exchange_id = ? ORDER BY s.position",
        (exchange_id,),
    ).fetchall()
    return [Block(row["name"], row["content"], row["size"], image=bool(row["image"])) for row in rows]


def last_system(db: sqlite3.Connection, cid: str) -> str:
    rows = chain(db, cid)
    return rows[-1]["system"] if rows else ""


_FIELDS = (
    "e.id, e.conversation_id, c.name AS conversation_name, e.turn, e.created_at, e.command, e.prompt, "
    "e.system, e.reply, e.reasoning, e.model, e.backend, e.endpoint, e.params, e.prompt_tokens, "
    "e.completion_tokens, e.first_token_s, e.total_s, e.finish_reason, e.schema, e.schema_valid"
)


def exchanges(db: sqlite3.Connection, which: Filter) -> list[dict[str, Any]]:
    """The exchanges `which` names, in the order they are shown: oldest (or least relevant) first."""
    where, values = [], []
    if which.cid and not which.query:  # the whole conversation, with what it shares with its parent
        rows = [row for row in chain(db, which.cid) if _keeps(row, which)]
        return with_sources(db, [_record(row) for row in (rows[-which.limit :] if which.limit > 0 else rows)])
    if which.cid:
        where.append("e.conversation_id = ?")
        values.append(which.cid)
    if which.model:
        where.append("e.model = ?")
        values.append(which.model)
    if which.since:
        where.append("e.created_at >= ?")
        values.append(which.since)
    limit = f" LIMIT {int(which.limit)}" if which.limit > 0 else ""
    if which.query:
        rows = _search(db, which.query, where, values, limit, which.latest)
    else:
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = db.execute(
            f"SELECT {_FIELDS} FROM exchanges e JOIN conversations c ON c.id = e.conversation_id"
            f"{clause} ORDER BY e.created_at DESC, e.id DESC{limit}",
            values,
        ).fetchall()
    return with_sources(db, [_record(row) for row in reversed(rows)])


def _keeps(row: sqlite3.Row, which: Filter) -> bool:
    return (which.model is None or row["model"] == which.model) and (
        which.since is None or row["created_at"] >= which.since
    )


def _search(db, query: str, where: list[str], values: list, limit: str, latest: bool) -> list[sqlite3.Row]:
    """FTS5 over prompt and reply, best match first (or newest first). Text that is not valid
    FTS5 syntax (a lone quote, an unbalanced parenthesis, a leading `-`) is searched as words."""
    clause = "".join(f" AND {w}" for w in where)
    order = "e.created_at DESC, e.id DESC" if latest else "exchanges_fts.rank"
    sql = (
        f"SELECT {_FIELDS} FROM exchanges_fts JOIN exchanges e ON e.id = exchanges_fts.rowid "
        f"JOIN conversations c ON c.id = e.conversation_id WHERE exchanges_fts MATCH ?{clause} ORDER BY {order}{limit}"
    )
    try:
        return db.execute(sql, [query, *values]).fetchall()
    except sqlite3.OperationalError:  # FTS5's messages vary (syntax error, unterminated string, no such
        pass  # column for `a-b`); a real failure fails again below and is raised from there
    words = re.findall(r"\w+", query)
    if not words:
        return []
    return db.execute(sql, [" ".join(f'"{w}"' for w in words), *values]).fetchall()


def _record(row: sqlite3.Row) -> dict[str, Any]:
    """An exchange as `logs --json` gives it (docs/log.md names the fields)."""
    record = dict(row)
    try:
        record["params"] = json.loads(record["params"] or "{}")
    except ValueError:
        record["params"] = {}
    if record["schema"] is not None:
        try:
            record["schema"] = json.loads(record["schema"])
        except ValueError:
            pass
    record["schema_valid"] = None if record["schema_valid"] is None else bool(record["schema_valid"])
    return record


def with_sources(db: sqlite3.Connection, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record's `sources`: [{name, hash, size}] of what was sent before its prompt (its text
    is stored once, in `fragments`, under that hash)."""
    for record in records:
        rows = db.execute(
            "SELECT name, hash, size FROM exchange_sources WHERE exchange_id = ? ORDER BY position", (record["id"],)
        ).fetchall()
        record["sources"] = [dict(row) for row in rows]
    return records


def conversations(db: sqlite3.Connection, limit: int = 0) -> list[dict[str, Any]]:
    """Newest last: id, name, model (of the last exchange), exchanges, last time."""
    rows = db.execute(
        "SELECT c.id, c.name, c.parent_id, c.parent_turn, coalesce(max(e.turn), c.parent_turn, 0) AS exchanges, "
        "max(e.created_at) AS last_at, "
        "(SELECT model FROM exchanges WHERE conversation_id = c.id ORDER BY turn DESC LIMIT 1) AS model "
        "FROM conversations c LEFT JOIN exchanges e ON e.conversation_id = c.id "
        "GROUP BY c.id ORDER BY coalesce(max(e.created_at), c.created_at) DESC, c.rowid DESC"
        + (f" LIMIT {int(limit)}" if limit else "")
    ).fetchall()
    return [dict(row) for row in reversed(rows)]


def counts(db: sqlite3.Connection) -> tuple[int, int]:
    conversations_n = db.execute("SELECT count(*) FROM conversations").fetchone()[0]
    exchanges_n = db.execute("SELECT count(*) FROM exchanges").fetchone()[0]
    return conversations_n, exchanges_n


# ---- changes on request ------------------------------------------------------------------------


def delete(store: LogStore, *, exchange: int | None = None, cid: str | None = None, before: str | None = None) -> int:
    """Delete exchanges (one, a conversation's, or all before a time) and the conversations left
    empty; then rewrite the file so the text is gone from it, not only unlinked. How many went."""
    with store.writing() as db:
        if exchange is not None:
            gone = db.execute("DELETE FROM exchanges WHERE id = ?", (exchange,)).rowcount
        elif cid is not None:
            _detach_forks(db, cid)
            gone = db.execute("DELETE FROM exchanges WHERE conversation_id = ?", (cid,)).rowcount
            db.execute("DELETE FROM conversations WHERE id = ?", (cid,))
        elif before is not None:
            gone = db.execute("DELETE FROM exchanges WHERE created_at < ?", (before,)).rowcount
        else:
            raise ValueError("nothing to delete")
        db.execute(
            "DELETE FROM conversations WHERE NOT EXISTS "
            "(SELECT 1 FROM exchanges WHERE conversation_id = conversations.id)"
        )
        # Merge the index's segments: a deleted row's words leave the index's pages too.
        db.execute("INSERT INTO exchanges_fts (exchanges_fts) VALUES ('optimize')")
    scrub(store)
    return gone


def _detach_forks(db: sqlite3.Connection, cid: str) -> None:
    """A conversation forked from `cid` keeps the exchanges it shared with it: they are copied
    into it before `cid` goes, and it stands alone."""

    columns = EXCHANGE_COLUMNS.replace("conversation_id, ", "")
    for fork in db.execute("SELECT id, parent_turn FROM conversations WHERE parent_id = ?", (cid,)).fetchall():
        for row in chain(db, cid):
            if row["turn"] <= (fork["parent_turn"] or 0):
                db.execute(
                    f"INSERT INTO exchanges ({EXCHANGE_COLUMNS}) SELECT ?, {columns} FROM exchanges WHERE id = ?",
                    (fork["id"], row["id"]),
                )
        db.execute("UPDATE conversations SET parent_id = NULL, parent_turn = NULL WHERE id = ?", (fork["id"],))


def scrub(store: LogStore) -> None:
    """VACUUM (free pages rewritten away) and empty the WAL file, which held the old pages."""
    db = store.connect()
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def backup(store: LogStore, target: Path) -> None:
    """A consistent copy while others write (VACUUM INTO), made private."""
    if target.exists():
        raise InputError(f"{target} exists; give a new file name")
    db = store.connect(create=False)
    db.execute("VACUUM INTO ?", (str(target),))
    target.chmod(0o600)


# ---- times -------------------------------------------------------------------------------------------

_AGO = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since(text: str, now: datetime | None = None) -> str:
    """`2h`, `3d`, `1w` ago, or a date / date and time (local time unless it says otherwise), as
    the log's UTC timestamps spell it."""
    now = now or datetime.now(UTC)
    match = _AGO.match(text)
    if match:
        moment = now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise InputError(
                f"--since {text!r}: give a date (2026-12-01), a date and time, or an age (2h, 3d)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.astimezone()  # the user's local time
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")

"""The conversation log's file on a real SQLite database: private, WAL, migrated, searched
with FTS5 whatever the query, deletions gone from the bytes, and every failure a warning."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from falconchat import log_query
from falconchat.conversation import Conversation
from falconchat.conversation_log import ConversationLog
from falconchat.errors import InputError, LogError
from falconchat.log_store import SCHEMA_VERSION, Exchange, LogStore, LogUnreadable
from falconchat.types import Done, SamplingParams, TextDelta


@pytest.fixture
def store(tmp_path):
    store = LogStore(tmp_path / "data" / "falconchat" / "log.db")
    yield store
    store.close()


def test_a_new_log_is_private_in_wal_mode_at_the_schema_version(store):
    store.add(store.new_conversation(), Exchange("hi", "hello", "stop"))
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    for name in os.listdir(store.path.parent):  # the database, its -wal and -shm
        assert stat.S_IMODE(os.stat(store.path.parent / name).st_mode) == 0o600, name
    with sqlite3.connect(store.path) as db:  # plain tables anyone's sqlite3 reads
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT prompt, reply, finish_reason, turn FROM exchanges").fetchall() == [
            ("hi", "hello", "stop", 1)
        ]


def test_a_newer_schema_is_refused_and_left_alone(store):
    store.connect()
    store.connect().execute("PRAGMA user_version = 99")
    store.close()
    before = store.path.read_bytes()
    with pytest.raises(LogUnreadable, match="schema version 99"):
        LogStore(store.path).connect()
    assert store.path.read_bytes() == before


@pytest.mark.parametrize(
    "query", ['"', "(", "a-b", "-x", "*", "NOT", "x AND", "((paris", 'say "hi', "c++", "AND OR", "::", ""]
)
def test_any_query_is_searched_never_an_error(store, query):
    cid = store.new_conversation()
    store.add(cid, Exchange("what is a-b in c++", 'say "hi" to paris (x)', "stop"))
    found = log_query.exchanges(store.connect(), log_query.Filter(query=query))
    assert isinstance(found, list)


def test_search_ranks_by_relevance_and_fts_syntax_works(store):
    cid = store.new_conversation()
    store.add(cid, Exchange("tell me about paris", "Paris is a city. Paris, paris, paris.", "stop"))
    store.add(cid, Exchange("and lyon?", "Lyon is near paris", "stop"))
    store.add(cid, Exchange("unrelated", "nothing here", "stop"))
    db = store.connect()
    ranked = log_query.exchanges(db, log_query.Filter(query="paris"))
    assert [e["prompt"] for e in ranked] == ["and lyon?", "tell me about paris"]  # best match last, nearest the prompt
    assert [e["prompt"] for e in log_query.exchanges(db, log_query.Filter(query="lyo*"))] == ["and lyon?"]
    latest = log_query.exchanges(db, log_query.Filter(query="paris", latest=True))
    assert [e["prompt"] for e in latest] == ["tell me about paris", "and lyon?"]


def test_ids_sort_by_time_and_a_unique_prefix_is_enough(store):
    first = store.new_conversation(name="work")
    second = store.new_conversation()
    assert first < second and len(first) == 26
    db = store.connect()
    assert log_query.resolve(db, second.lower()) == second
    assert log_query.resolve(db, "work") == first
    common = next(first[:n] for n in range(len(first)) if first[: n + 1] != second[: n + 1])
    with pytest.raises(InputError, match="ambiguous"):
        log_query.resolve(db, common)
    with pytest.raises(InputError, match="no logged conversation"):
        log_query.resolve(db, "ZZZZ")


def test_deleted_text_is_gone_from_the_file(store):
    keep = store.new_conversation()
    store.add(keep, Exchange("keep this", "kept", "stop"))
    gone = store.new_conversation()
    store.add(gone, Exchange("the word xylophonist is secret", "xylophonist again", "stop"))
    store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert b"xylophonist" in store.path.read_bytes()
    assert log_query.delete(store, cid=gone) == 1
    data = b"".join(p.read_bytes() for p in store.path.parent.iterdir())
    assert b"xylophonist" not in data
    assert log_query.exchanges(store.connect(), log_query.Filter(query="xylophonist")) == []
    assert [t.user for t in log_query.turns(store.connect(), keep)] == ["keep this"]


def _say(conversation: Conversation, log: ConversationLog, message: str, reply: str) -> None:
    def events():
        yield TextDelta(reply)
        yield Done("stop", 3, 1, 0.1, 0.2)

    done = None
    for event in conversation.record(message, events(), model="m"):
        done = event if isinstance(event, Done) else done
    log.exchange(conversation, message, done, None, SamplingParams())


def test_a_conversation_that_parts_from_the_log_is_logged_as_a_fork(store):
    """/undo, /retry and /clear change the conversation in memory; the log keeps what was said
    and goes on in a fork that shares the turns before the change."""
    log, conversation = ConversationLog(store, pytest.fail, name="work"), Conversation()
    for n in (1, 2, 3):
        _say(conversation, log, f"q{n}", f"a{n}")
    original = log.cid
    conversation.undo()
    _say(conversation, log, "q3 again", "a3b")
    db = store.connect()
    assert log.cid != original
    assert [t.user for t in log_query.turns(db, original)] == ["q1", "q2", "q3"]
    assert [t.user for t in log_query.turns(db, log.cid)] == ["q1", "q2", "q3 again"]
    assert log_query.conversation_named(db, "work") == log.cid  # the name follows the chat
    everything = log_query.exchanges(db, log_query.Filter(limit=0))
    assert [e["prompt"] for e in everything] == ["q1", "q2", "q3", "q3 again"]  # shared turns shown once
    # /fork 1 from the fork, then deleting its parent: the new fork keeps what it shared
    conversation.turns[:] = conversation.turns[:1]
    fork = log.fork(conversation)
    assert log_query.latest_conversation(store.connect()) == fork  # -c after /fork and leaving: the fork
    _say(conversation, log, "q2 other", "a2c")
    assert log.cid == fork
    log_query.delete(store, cid=original)
    assert [t.user for t in log_query.turns(store.connect(), fork)] == ["q1", "q2 other"]


def test_a_corrupt_log_is_one_warning_and_never_overwritten(tmp_path):
    path = tmp_path / "log.db"
    path.write_bytes(b"this is not a database, it is garbage " * 100)
    before = path.read_bytes()
    warnings: list[str] = []
    log, conversation = ConversationLog(LogStore(path), warnings.append), Conversation()
    _say(conversation, log, "one", "1")
    _say(conversation, log, "two", "2")
    assert len(warnings) == 1 and warnings[0].startswith("falconchat: warning: not logged")
    assert [t.assistant for t in conversation.turns] == ["1", "2"]  # the chat went on
    assert path.read_bytes() == before
    with pytest.raises(LogError):
        LogStore(path).connect()


def test_a_read_only_log_is_one_warning(store):
    import subprocess

    store.add(store.new_conversation(), Exchange("hi", "hello", "stop"))
    store.close()
    store.path.chmod(0o400)
    immutable = os.access(store.path, os.W_OK)  # root writes a 0400 file anyway: make it immutable
    if immutable and subprocess.run(["chattr", "+i", store.path], capture_output=True).returncode != 0:
        pytest.skip("root, and no chattr here to make a file read-only")
    try:
        warnings: list[str] = []
        log, conversation = ConversationLog(LogStore(store.path), warnings.append), Conversation()
        _say(conversation, log, "one", "1")
        _say(conversation, log, "two", "2")
        assert len(warnings) == 1 and "readonly" in warnings[0], warnings
        assert [t.assistant for t in conversation.turns] == ["1", "2"]
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", store.path], check=True)


def test_a_log_locked_past_the_busy_timeout_is_one_warning(store, monkeypatch):
    import falconchat.log_store as log_store

    monkeypatch.setattr(log_store, "BUSY_TIMEOUT_S", 0.05)
    store.add(store.new_conversation(), Exchange("hi", "hello", "stop"))
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, and not letting go
    try:
        warnings: list[str] = []
        log, conversation = ConversationLog(LogStore(store.path), warnings.append), Conversation()
        _say(conversation, log, "one", "1")
        assert len(warnings) == 1 and "locked" in warnings[0]
        assert conversation.turns[0].assistant == "1"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.fixture
def full_disk(tmp_path):
    """A 512 KiB file system (tmpfs), for a disk that fills up: needs root's mount."""
    import subprocess

    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", where]).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)


def test_a_full_disk_is_one_warning_and_the_chat_goes_on(full_disk):
    store = LogStore(full_disk / "falconchat" / "log.db")
    store.add(store.new_conversation(), Exchange("hi", "hello", "stop"))
    store.close()
    filler = full_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # everything left, taken
        while os.write(fd, b"x" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    warnings: list[str] = []
    log, conversation = ConversationLog(LogStore(store.path), warnings.append), Conversation()
    for n in range(3):
        _say(conversation, log, f"message {n}", "a long reply " * 2000)
    assert len(warnings) == 1 and "full" in warnings[0], warnings
    assert len(conversation.turns) == 3
    filler.unlink()  # space again: the log was never damaged
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_older_file_is_migrated_step_by_step_keeping_its_rows(store, monkeypatch):
    """The migration path docs/log.md describes, run: a version-1 file meets a falconchat whose
    schema is version 2 (one more MIGRATIONS entry) and is brought forward, rows kept."""
    import falconchat.log_store as log_store

    cid = store.new_conversation(name="old")
    store.add(cid, Exchange("kept across versions", "yes", "stop"))
    store.close()
    monkeypatch.setattr(
        log_store, "MIGRATIONS", [*log_store.MIGRATIONS, "ALTER TABLE exchanges ADD COLUMN rating INTEGER;"]
    )
    monkeypatch.setattr(log_store, "SCHEMA_VERSION", log_store.SCHEMA_VERSION + 1)
    migrated = LogStore(store.path)
    db = migrated.connect()
    assert db.execute("PRAGMA user_version").fetchone()[0] == log_store.SCHEMA_VERSION
    assert db.execute("SELECT prompt, rating FROM exchanges").fetchall()[0][:] == ("kept across versions", None)
    assert [t.user for t in log_query.turns(db, log_query.resolve(db, "old"))] == ["kept across versions"]
    migrated.close()

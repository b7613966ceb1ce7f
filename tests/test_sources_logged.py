"""Issue 26 item 5: sources are logged once. Each source's text is stored once by its sha256
however many times it is sent; an exchange keeps its words as its prompt and names the sources
it used (name, hash, size); `ask -c` sends them again, rebuilt from the stored text."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from processes import falconchat, isolated_env

pytestmark = pytest.mark.process


def test_a_source_sent_twice_is_stored_once_and_sent_again_with_c(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Noted."], "eos_token")
    env = isolated_env(tmp_path)
    (tmp_path / "notes.txt").write_text("the plan: ship on friday\n")
    for args in (["-f", "notes.txt", "when do we ship?"], ["-c", "-f", "notes.txt", "and the plan again?"]):
        done = falconchat("ask", "--endpoint", tgi_endpoint.url, *args, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr.decode()
    block = "----- BEGIN notes.txt -----\nthe plan: ship on friday\n----- END notes.txt -----"
    assert tgi_endpoint.requests[1].body["inputs"] == (
        f"User: {block}\n\nwhen do we ship?\nAssistant: Noted.\nUser: {block}\n\nand the plan again?\nAssistant:"
    )
    db = sqlite3.connect(tmp_path / "data" / "falconchat" / "log.db")
    digest = hashlib.sha256(b"the plan: ship on friday\n").hexdigest()
    assert db.execute("SELECT hash, content FROM fragments").fetchall() == [(digest, "the plan: ship on friday\n")]
    assert db.execute("SELECT prompt FROM exchanges ORDER BY id").fetchall() == [
        ("when do we ship?",),
        ("and the plan again?",),
    ]
    assert db.execute("SELECT name, hash, size FROM exchange_sources").fetchall() == [("notes.txt", digest, 25)] * 2
    done = falconchat("logs", "--json", "-n", "1", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr.decode()
    [record] = json.loads(done.stdout)
    assert record["prompt"] == "and the plan again?"
    assert record["sources"] == [{"name": "notes.txt", "hash": digest, "size": 25}]

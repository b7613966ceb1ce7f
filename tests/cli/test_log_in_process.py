"""Every exchange of `ask` logged, continued with -c / --cid, and the four ways to turn the log
off; in process against a scripted endpoint over real HTTP and a real SQLite file."""

from __future__ import annotations

import json
import sqlite3

import pytest

from falconchat.cli.app import run
from falconchat.errors import ExitCode
from in_process import environment


def _log(tmp_path):
    return tmp_path / "data" / "falconchat" / "log.db"


def _rows(tmp_path, sql="SELECT conversation_id, turn, command, prompt, reply, finish_reason FROM exchanges"):
    with sqlite3.connect(_log(tmp_path)) as db:
        return db.execute(sql + " ORDER BY id").fetchall()


def _ask(tmp_path, endpoint, *args, **variables):
    env = environment(tmp_path, FALCONCHAT_ENDPOINT=endpoint.url, **variables)
    code = run(["ask", *args], env)
    return code, env.stdout.text(), env.stderr.text()


def test_ask_is_logged_and_ask_c_sends_the_earlier_turns(tmp_path, tgi_endpoint):
    tgi_endpoint.echo()
    assert _ask(tmp_path, tgi_endpoint, "-s", "be brief", "name a colour")[:2] == (0, "echo: name a colour\n")
    assert _ask(tmp_path, tgi_endpoint, "-c", "and in French?")[0] == 0
    sent = tgi_endpoint.requests[-1].body["inputs"]
    # the earlier turn and the conversation's system message went with the new one
    assert (
        sent == "System:be brief\nUser: name a colour\nAssistant: echo: name a colour\nUser: and in French?\nAssistant:"
    )
    rows = _rows(tmp_path)
    assert [r[1:] for r in rows] == [
        (1, "ask", "name a colour", "echo: name a colour", "stop"),
        (2, "ask", "and in French?", "echo: and in French?", "stop"),
    ]
    assert rows[0][0] == rows[1][0]
    # a new ask starts a new conversation; --cid with a unique prefix goes back to the first
    _ask(tmp_path, tgi_endpoint, "unrelated")
    first = rows[0][0]
    assert _ask(tmp_path, tgi_endpoint, "--cid", first[:22].lower(), "third")[0] == 0
    assert "User: and in French?" in tgi_endpoint.requests[-1].body["inputs"]
    assert _rows(tmp_path)[-1][:2] == (first, 3)


def test_what_an_exchange_records_and_never_a_key(tmp_path, tgi_endpoint):
    tgi_endpoint.echo()
    url = tgi_endpoint.url.replace("http://", "http://user:pw-secret@") + "/?token=q-secret"
    env = environment(tmp_path, FALCONCHAT_API_KEY="key-secret-123")
    assert run(["ask", "--endpoint", url, "-t", "0.2", "--seed", "7", "--json", "hello"], env) == 0
    with sqlite3.connect(_log(tmp_path)) as db:
        db.row_factory = sqlite3.Row
        row = dict(db.execute("SELECT * FROM exchanges").fetchone())
    assert row["endpoint"] == tgi_endpoint.url and row["backend"] == "tgi"
    assert json.loads(row["params"])["temperature"] == 0.2 and json.loads(row["params"])["seed"] == 7
    assert row["completion_tokens"] > 0 and row["total_s"] >= row["first_token_s"] >= 0
    assert row["finish_reason"] == "stop" and row["command"] == "ask" and row["model"]
    data = b"".join(p.read_bytes() for p in _log(tmp_path).parent.iterdir() if p.is_file())
    for secret in (b"key-secret-123", b"pw-secret", b"q-secret", b"Authorization"):
        assert secret not in data


def test_schema_and_whether_the_reply_kept_it(tmp_path, tgi_endpoint):
    tgi_endpoint.stream(['{"name":', ' "Ada"}'], "eos_token").stream(["not json"], "eos_token")
    assert _ask(tmp_path, tgi_endpoint, "--schema", "name", "who?")[0] == 0
    assert _ask(tmp_path, tgi_endpoint, "--schema", "name", "who?")[0] == ExitCode.REJECTED
    rows = _rows(tmp_path, "SELECT schema, schema_valid FROM exchanges")
    assert [valid for _, valid in rows] == [1, 0]
    assert json.loads(rows[0][0])["kind"] == "json_schema"


@pytest.mark.parametrize(
    "how",
    [
        {"args": ["--no-log"]},
        {"variables": {"FALCONCHAT_LOG": "0"}},
        {"config": "log = false\n"},
        {"logs_off": True},
    ],
)
def test_four_ways_to_turn_the_log_off(tmp_path, tgi_endpoint, how):
    tgi_endpoint.echo()
    variables = dict(how.get("variables", {}))
    if "config" in how:
        (tmp_path / "c.toml").write_text(how["config"])
        variables["FALCONCHAT_CONFIG"] = str(tmp_path / "c.toml")
    if how.get("logs_off"):
        assert run(["logs", "off"], environment(tmp_path)) == 0
    code, out, err = _ask(tmp_path, tgi_endpoint, *how.get("args", []), "hello", **variables)
    assert (code, out, err) == (0, "echo: hello\n", "")
    assert not _log(tmp_path).exists() or _rows(tmp_path) == []
    # and a flag beats them all
    assert _ask(tmp_path, tgi_endpoint, "--log", "again", **variables)[0] == 0
    assert [r[3] for r in _rows(tmp_path)] == ["again"]


def test_a_corrupt_log_costs_no_reply(tmp_path, tgi_endpoint):
    tgi_endpoint.echo()
    _log(tmp_path).parent.mkdir(parents=True)
    _log(tmp_path).write_bytes(b"garbage " * 1000)
    code, out, err = _ask(tmp_path, tgi_endpoint, "hello")
    assert (code, out) == (0, "echo: hello\n")
    assert err.count("\n") == 1 and err.startswith("falconchat: warning: not logged")
    assert _log(tmp_path).read_bytes() == b"garbage " * 1000


def test_continuing_with_nothing_logged_is_one_error_line(tmp_path, tgi_endpoint):
    code, out, err = _ask(tmp_path, tgi_endpoint, "-c", "hello")
    assert code == ExitCode.ERROR and out == ""
    assert err.startswith("falconchat: error: nothing is logged yet") and err.count("\n") == 1
    tgi_endpoint.echo()
    _ask(tmp_path, tgi_endpoint, "hello")
    code, _, err = _ask(tmp_path, tgi_endpoint, "--cid", "ZZZZ", "hello")
    assert code == ExitCode.USAGE and "no logged conversation 'ZZZZ'" in err


def _logs(tmp_path, *args, stdin=None):
    env = environment(tmp_path, stdin)
    code = run(["logs", *args], env)
    return code, env.stdout.text(), env.stderr.text()


def test_logs_show_search_reply_and_code_block_sanitised(tmp_path, tgi_endpoint):
    tgi_endpoint.stream([" See:\n```python\nprint('a')\n```\nand\n```sh\necho \x1b[2Jhi\n```\n"], "eos_token")
    tgi_endpoint.echo()
    _ask(tmp_path, tgi_endpoint, "code please")
    _ask(tmp_path, tgi_endpoint, "evil \x1b]0;title\x07 text")
    code, out, _ = _logs(tmp_path)
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert out.index("code please") < out.index("evil")  # newest last
    assert _logs(tmp_path, "-n", "1", "--json")[1].count('"prompt"') == 1
    records = json.loads(_logs(tmp_path, "--json", "-n", "0")[1])
    assert [r["turn"] for r in records] == [1, 1] and {r["command"] for r in records} == {"ask"}
    assert _logs(tmp_path, "-q", "please", "-x")[1] == "echo hi\n"  # the last block, controls removed
    assert _logs(tmp_path, "-q", 'code "please', "-r")[1].startswith("See:")  # a stray quote: plain words
    code, out, err = _logs(tmp_path, "-q", "nothing-like-this")
    assert (code, out) == (0, "") and "no exchange matches" in err


def test_logs_rm_asks_then_leaves_no_trace(tmp_path, tgi_endpoint):
    tgi_endpoint.echo()
    _ask(tmp_path, tgi_endpoint, "keep me")
    _ask(tmp_path, tgi_endpoint, "the zanzibarian secret")
    cid = json.loads(_logs(tmp_path, "--json", "-n", "1")[1])[0]["conversation_id"]
    code, _, err = _logs(tmp_path, "rm", "--cid", cid, stdin=b"")  # a script, without -y
    assert code == ExitCode.USAGE and "add -y" in err
    code, _, err = _logs(tmp_path, "rm", "--cid", cid[:24], stdin=None)  # a terminal: asked, and no answer
    assert code == 1 and "nothing deleted" in err
    assert b"zanzibarian" in b"".join(p.read_bytes() for p in _log(tmp_path).parent.iterdir() if p.is_file())
    assert _logs(tmp_path, "rm", "--cid", cid, "-y")[0] == 0
    assert b"zanzibarian" not in b"".join(p.read_bytes() for p in _log(tmp_path).parent.iterdir() if p.is_file())
    assert [r["prompt"] for r in json.loads(_logs(tmp_path, "--json")[1])] == ["keep me"]


def test_logs_status_says_what_is_wrong_with_a_corrupt_log(tmp_path):
    _log(tmp_path).parent.mkdir(parents=True)
    _log(tmp_path).write_bytes(b"garbage " * 1000)
    code, out, err = _logs(tmp_path, "status")
    assert code == ExitCode.ERROR and f"database: {_log(tmp_path)}" in out and "logging: on" in out
    assert err.startswith("falconchat: error: ") and "mv " in err and err.count("\n") == 1
    assert _log(tmp_path).read_bytes() == b"garbage " * 1000


def test_ask_json_names_the_conversation_to_go_on_with(tmp_path, tgi_endpoint):
    tgi_endpoint.echo()
    env = environment(tmp_path, FALCONCHAT_ENDPOINT=tgi_endpoint.url)
    assert run(["ask", "--json", "first"], env) == 0
    cid = json.loads(env.stdout.text())["conversation_id"]
    assert cid == _rows(tmp_path)[0][0]
    code, out, _ = _ask(tmp_path, tgi_endpoint, "--cid", cid, "--json", "second")
    assert code == 0 and json.loads(out)["conversation_id"] == cid
    assert "User: first" in tgi_endpoint.requests[-1].body["inputs"]
    assert json.loads(_ask(tmp_path, tgi_endpoint, "--no-log", "--json", "third")[1])["conversation_id"] is None


def test_logs_filters_by_time_model_and_conversation_and_rm_before(tmp_path):
    from falconchat.log_store import Exchange, LogStore

    store = LogStore(_log(tmp_path))
    old = store.new_conversation(
        exchanges=[Exchange("old one", "r", "stop", model="a", created_at="2020-01-01T00:00:00.000+00:00")]
    )
    recent = store.new_conversation(
        exchanges=[Exchange("recent a", "r", "stop", model="a"), Exchange("recent b", "r", "stop", model="b")]
    )
    store.close()

    def prompts(*args):
        code, out, err = _logs(tmp_path, "--json", *args)
        assert code == 0, err
        return [e["prompt"] for e in json.loads(out)]

    assert prompts("-n", "0") == ["old one", "recent a", "recent b"]
    assert prompts("--since", "2h") == ["recent a", "recent b"]
    assert prompts("--since", "2021-06-01") == ["recent a", "recent b"]
    assert prompts("-m", "a", "-n", "0") == ["old one", "recent a"]
    assert prompts("--cid", old) == ["old one"] and prompts("-c") == ["recent a", "recent b"]
    code, _, err = _logs(tmp_path, "--since", "last tuesday")
    assert code == ExitCode.USAGE and "--since 'last tuesday'" in err
    assert _logs(tmp_path, "rm", "--before", "30d", "-y")[0] == 0
    assert prompts("-n", "0") == ["recent a", "recent b"]
    conversations = json.loads(_logs(tmp_path, "list-conversations", "--json")[1])
    assert [c["id"] for c in conversations] == [recent]  # the emptied one went too

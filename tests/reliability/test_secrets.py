"""Secrets: canary values for HF_API_KEY, an endpoint URL's password and `serve --api-key`
must appear nowhere — stdout, stderr, --debug output, history, sessions, exports,
batch output, serve's log — and files holding conversations or history are 0600
in 0700 directories.
"""

from __future__ import annotations

import json
import stat

import pytest
from kit import (
    CANARY_KEY,
    CANARY_SERVE_KEY,
    CANARY_URL_PASSWORD,
    Terminal,
    files_without_canary,
    no_canary,
    no_traceback,
    run,
)
from serve_process import running

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

ENV = {"HF_API_KEY": CANARY_KEY}


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def no_canary_in(result, what: str) -> None:
    no_canary(result.out, f"stdout of {what}")
    no_canary(result.err, f"stderr of {what}")


@pytest.mark.parametrize("flags", [(), ("-v",), ("--debug",), ("--json",), ("--debug", "--json")], ids=" ".join)
def test_a_reply_with_the_key(home, tgi_endpoint, flags):
    tgi_endpoint.stream([" Fine"], "eos_token")
    result = run(home, "ask", *flags, "--endpoint", tgi_endpoint.url, "hi", env=ENV)
    assert result.code == 0, result.err
    assert tgi_endpoint.requests[0].headers["authorization"] == f"Bearer {CANARY_KEY}"  # the key was used
    no_canary_in(result, f"ask {' '.join(flags)}")


@pytest.mark.parametrize("flags", [(), ("--debug",), ("--json", "--debug")], ids=" ".join)
def test_an_endpoint_that_echoes_the_key_in_its_error(home, tgi_endpoint, flags):
    tgi_endpoint.error(401, f"token {CANARY_KEY} is not valid for Bearer {CANARY_KEY}")
    result = run(home, "ask", *flags, "--endpoint", tgi_endpoint.url, "hi", env=ENV)
    assert result.code == 4
    no_canary_in(result, "a 401 that echoes the key")
    if flags == ("--debug",):
        assert (
            "Traceback" in result.err
        )  # --debug shows its traceback (--json reports the error as JSON), never the key


@pytest.mark.parametrize("where", ["refused", "scripted"])
def test_a_password_in_the_endpoint_url(home, tgi_endpoint, closed_port_url, where):
    base = closed_port_url if where == "refused" else tgi_endpoint.url
    tgi_endpoint.error(500, "boom")
    url = base.replace("http://", f"http://user:{CANARY_URL_PASSWORD}@")
    result = run(home, "ask", "--debug", "--endpoint", url, "hi", env=ENV)
    assert result.code in (1, 3)
    no_canary_in(result, "ask with a password in the URL")
    (home / "config.toml").write_text(f'[models.secret]\nbackend = "tgi"\nendpoint = "{url}"\n')
    listing = run(home, "models", "--config", str(home / "config.toml"), env=ENV)
    assert listing.code == 0 and "secret" in listing.out
    no_canary_in(listing, "falconchat models")


def test_the_repl_history_sessions_and_exports(home, tgi_endpoint):
    (home / ".env").write_text(f"HF_API_KEY={CANARY_KEY}\nHF_API_FALCOM_BASE={tgi_endpoint.url}\n")
    tgi_endpoint.stream([" Fine"], "eos_token")
    term = Terminal(home, "chat", "--session", "work", "--debug")
    try:
        term.prompt()
        term.say("a question")
        shown = term.say("/show")
        assert tgi_endpoint.url in shown
        term.say("/save copy")
        term.say(f"/export {home / 'export.md'}")
        term.child.sendcontrol("d")
        assert term.finish() == 0
    finally:
        term.close()
    assert tgi_endpoint.requests[0].headers["authorization"] == f"Bearer {CANARY_KEY}"
    no_canary(term.screen, "the terminal")
    no_traceback(term.screen)
    data = home / "data" / "falconchat"
    written = files_without_canary(data) + files_without_canary(home / "config")
    no_canary((home / "export.md").read_text(), "the export")
    assert {p.name for p in written} >= {"history", "work.json", "copy.json"}
    for path in written:
        assert mode(path) == 0o600, (path, oct(mode(path)))
        assert mode(path.parent) == 0o700, (path.parent, oct(mode(path.parent)))
    assert mode(home / "export.md") == 0o600


def test_batch_output(home, tgi_endpoint):
    tgi_endpoint.echo()
    (home / "prompts.txt").write_text("first\nsecond\nthird\n")
    result = run(home, "batch", "--debug", "--endpoint", tgi_endpoint.url, "prompts.txt", "-o", "out.jsonl", env=ENV)
    assert result.code == 0, result.err
    assert all(r.headers["authorization"] == f"Bearer {CANARY_KEY}" for r in tgi_endpoint.requests)
    no_canary_in(result, "batch")
    rows = [json.loads(line) for line in (home / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    files_without_canary(home)
    piped = run(home, "batch", "--endpoint", tgi_endpoint.url, "prompts.txt", env=ENV)
    no_canary_in(piped, "batch to stdout")


def test_batch_output_is_private(home, tgi_endpoint):
    tgi_endpoint.echo()
    (home / "prompts.txt").write_text("first\n")
    assert run(home, "batch", "--endpoint", tgi_endpoint.url, "prompts.txt", "-o", "out.jsonl").code == 0
    assert mode(home / "out.jsonl") == 0o600


def test_serve_log_never_shows_either_key(home, serve_home):
    """serve --api-key CANARY, with --debug; clients with the right key, a wrong (canary) key and none."""
    with running(serve_home, "--api-key", CANARY_SERVE_KEY, "--debug") as server:
        quick = ("-t", "0", "--max-new-tokens", "4", "--endpoint", server.url, "hi")
        right = run(home, "ask", "--debug", *quick, env={"HF_API_KEY": CANARY_SERVE_KEY})
        wrong = run(home, "ask", "--debug", *quick, env=ENV)
        none = run(home, "ask", *quick)
        assert (right.code, wrong.code, none.code) == (0, 4, 4), (right.err, wrong.err, none.err)
        for result, what in ((right, "the right key"), (wrong, "a wrong key"), (none, "no key")):
            no_canary_in(result, f"ask with {what}")
        log = server.stop()
    assert " 401 " in log and " 200 " in log
    no_canary(log, "serve's log")
    files_without_canary(serve_home)

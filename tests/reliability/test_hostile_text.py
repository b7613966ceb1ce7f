"""Hostile text through every channel that reaches the screen: model output, piped
input echoed back, endpoint error messages, model names, session files.

On a real pseudo-terminal no control sequence but falconchat's own styling may
arrive (kit.screen_leaks), every payload's visible text must be shown, and nothing
may crash; piped output carries no escape code at all.
"""

from __future__ import annotations

import json
import os

import pytest
from hostile import PAYLOADS, as_tokens, corpus, markers, text
from kit import FALCONCHAT, Terminal, no_escapes, no_leaks, no_traceback, plain, run, screen_leaks

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server


def assert_all_shown(shown: str, where: str) -> None:
    missing = [(p.name, m) for i, p in enumerate(PAYLOADS) for m in markers(i, p) if m not in shown]
    assert not missing, f"not shown in {where}: {missing}"


# ---- the detector itself must be able to fail ------------------------------------------


def test_the_corpus_is_large_enough():
    assert len(PAYLOADS) >= 40


@pytest.mark.parametrize(
    "payload", [p for p in PAYLOADS if not p.name.startswith(("Rich", "emoji"))], ids=lambda p: p.name
)
def test_the_screen_detector_sees_every_raw_payload(payload):
    """Written raw, each control payload is a leak: so a clean screen below means something."""
    assert screen_leaks(text(0, payload)), payload


# ---- model output ----------------------------------------------------------------------


def test_model_output_piped_is_exactly_the_visible_text(home, tgi_endpoint):
    tgi_endpoint.stream(as_tokens(corpus()), "eos_token")
    result = run(home, "ask", "--endpoint", tgi_endpoint.url, "say it")
    assert result.code == 0, result.err
    no_traceback(result.err)
    no_escapes(result.out)
    assert result.out.endswith("\n") and result.out.startswith("m0a ")
    assert_all_shown(result.out, "piped output")


def test_model_output_on_a_terminal_shows_no_foreign_sequence(home, tgi_endpoint):
    tgi_endpoint.stream(as_tokens(corpus()), "eos_token")
    term = Terminal(home, "ask", "--endpoint", tgi_endpoint.url, "say it")
    assert term.finish() == 0
    no_traceback(term.screen)
    no_leaks(term.screen)
    assert_all_shown(plain(term.screen), "the rendered reply")


def test_model_output_in_the_repl_history_copy_and_files(home, tgi_endpoint):
    """The reply live, then again through /history and /copy, then saved and exported."""
    tgi_endpoint.stream(as_tokens(corpus()), "eos_token")
    term = Terminal(home, "--endpoint", tgi_endpoint.url)
    try:
        term.prompt()
        assert_all_shown(term.say("say it"), "the live reply")
        assert_all_shown(term.say("/history"), "/history")
        assert_all_shown(term.say("/copy"), "/copy")
        term.say("/save hostile")
        term.say(f"/export {home / 'hostile.md'}")
        term.child.sendcontrol("d")
        assert term.finish() == 0
    finally:
        term.close()
    no_traceback(term.screen)
    no_leaks(term.screen)
    # `cat` of a file falconchat wrote replays nothing: the session keeps the reply whole, but as
    # JSON escapes, and the Markdown export is the text as shown.
    saved = (home / "data" / "falconchat" / "sessions" / "hostile.json").read_text()
    no_escapes(saved, "the session file")
    assert "\\u001b]52;c;" in saved and "\\u009d" in saved  # kept, escaped
    no_escapes((home / "hostile.md").read_text(), "the Markdown export")


# ---- piped input echoed back -------------------------------------------------------------


def test_piped_input_echoed_back_on_a_terminal(home, tgi_endpoint):
    """`falconchat ask < hostile.txt` with the reply on a terminal: the endpoint echoes the prompt."""
    tgi_endpoint.echo()
    (home / "hostile.txt").write_bytes(corpus().encode())
    shell = f"exec {' '.join(FALCONCHAT)} ask --endpoint {tgi_endpoint.url} < hostile.txt"
    term = Terminal(home, command=["sh", "-c", shell])
    assert term.finish() == 0
    no_traceback(term.screen)
    no_leaks(term.screen)
    sent = tgi_endpoint.requests[0].body["inputs"]
    no_escapes(sent, "the prompt sent to the endpoint")
    shown = plain(term.screen)
    for i, payload in enumerate(PAYLOADS):
        for marker in markers(i, payload)[:1]:  # the echo splits on spaces: look for the opening marker
            assert marker in shown, payload.name


# ---- endpoint error messages ----------------------------------------------------------------


def test_endpoint_error_messages_piped_are_one_clean_line(home, tgi_endpoint):
    chosen = list(enumerate(PAYLOADS))[::7]
    for i, payload in chosen:
        tgi_endpoint.error(500, text(i, payload), "generation")
    for i, _payload in chosen:
        result = run(home, "ask", "--endpoint", tgi_endpoint.url, "hi")
        assert result.code == 1
        no_traceback(result.err)
        no_escapes(result.err, "the error line")
        assert len(result.err.splitlines()) == 1, result.err
        assert f"m{i}a" in result.err


def test_endpoint_error_messages_in_the_repl(home, tgi_endpoint):
    """Every payload as an endpoint's error message (status and mid-stream), one message each."""
    for i, payload in enumerate(PAYLOADS):
        if i % 2:
            tgi_endpoint.error(422, text(i, payload), "validation")
        else:
            tgi_endpoint.error_event([" part"], text(i, payload))
    term = Terminal(home, "--endpoint", tgi_endpoint.url)
    try:
        term.prompt()
        for i, payload in enumerate(PAYLOADS):
            shown = term.say(f"message {i}")
            assert f"m{i}a" in shown, (payload.name, shown)
        term.child.sendcontrol("d")
        assert term.finish() == 0
    finally:
        term.close()
    no_traceback(term.screen)
    no_leaks(term.screen)


# ---- model names and metadata ------------------------------------------------------------


def hostile_models_config(home, url: str) -> str:
    """A config whose model names and endpoint paths carry payloads (TOML spells controls as \\u escapes)."""
    lines = []
    for i, payload in enumerate(PAYLOADS[:12]):
        name = json.dumps(text(i, payload))  # a JSON string (controls as \u escapes) is a TOML basic string
        lines += [f"[models.{name}]", 'backend = "tgi"', f'endpoint = "{url}/p{i}"', ""]
    path = home / "hostile.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


def test_model_names_in_the_models_listing(home, tgi_endpoint):
    config = hostile_models_config(home, tgi_endpoint.url)
    result = run(home, "models", "--config", config)
    assert result.code == 0, result.err
    no_traceback(result.err)
    no_escapes(result.out + result.err)
    term = Terminal(home, "models", "--config", config)
    assert term.finish() == 0
    no_leaks(term.screen)
    assert "m0a" in plain(term.screen)


def test_model_names_in_the_repl_banner_toolbar_history_and_errors(home, tgi_endpoint):
    config = hostile_models_config(home, tgi_endpoint.url)
    tgi_endpoint.stream([" fine"], "eos_token")
    names = [text(i, p) for i, p in enumerate(PAYLOADS[:12])]
    term = Terminal(home, "--config", config, "-m", names[0])
    try:
        term.prompt()
        term.say("hello")
        term.say("/history")
        term.say("/model")
        term.say("/show")
        term.say("/model " + "m3a")  # an unknown name: the notice lists the known, hostile, ones
        term.child.sendcontrol("d")
        assert term.finish() == 0
    finally:
        term.close()
    no_traceback(term.screen)
    no_leaks(term.screen)


def test_a_model_file_with_a_hostile_name(home):
    """The GGUF's file name is shown in the banner: a link to the bundled model, named as an attack."""
    from falconchat.backends.gguf import bundled_model_path

    name = text(0, PAYLOADS[20]).replace("/", "_") + ".gguf"
    (home / name).symlink_to(bundled_model_path())
    term = Terminal(home, "--model-path", str(home / name), "-t", "0", "--max-new-tokens", "4")
    try:
        term.prompt()
        term.say("hi")
        term.child.sendcontrol("d")
        assert term.finish() == 0
    finally:
        term.close()
    no_traceback(term.screen)
    no_leaks(term.screen)
    missing = run(home, "ask", "--model-path", str(home / ("x" + name)), "hi")
    assert missing.code == 2
    no_escapes(missing.err, "the error line")


# ---- session files ------------------------------------------------------------------------


def test_a_session_file_carrying_payloads(home, tgi_endpoint):
    """A session file (shared, downloaded, tampered with) whose every string is hostile."""
    tgi_endpoint.stream([" fine"], "eos_token")
    sessions = home / "data" / "falconchat" / "sessions"
    sessions.mkdir(parents=True, mode=0o700)
    turns = [{"user": text(i, p), "assistant": text(i, p), "status": "complete"} for i, p in enumerate(PAYLOADS)]
    document = {
        "format": "falconchat-session",
        "version": 1,
        "model": text(21, PAYLOADS[21]),
        "system": text(0, PAYLOADS[0]),
        "params": {"stop": [text(1, PAYLOADS[1])]},
        "turns": turns,
    }
    (sessions / "evil.json").write_text(json.dumps(document), encoding="utf-8")
    os.chmod(sessions / "evil.json", 0o600)
    term = Terminal(home, "chat", "--session", "evil", "--endpoint", tgi_endpoint.url, "--max-new-tokens", "8")
    try:
        term.prompt()
        assert_all_shown(term.say("/history"), "/history of the session")
        term.say("/show")
        term.say("next")
        term.say(f"/load {sessions / 'evil.json'}")
        term.child.sendcontrol("d")
        assert term.finish() == 0
    finally:
        term.close()
    no_traceback(term.screen)
    no_leaks(term.screen)

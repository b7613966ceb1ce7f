"""The chat's context commands in a real terminal (tmux) against the scripted TGI endpoint:
/file and /run attach sources to the next message (the endpoint receives their blocks before
the words), /files lists them with their size in tokens, /history names them without their
text, /drop clears them; sources that do not fit are named, nothing is sent, and the chat keeps
the message and the attachments."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.process


def test_file_and_run_attach_to_the_next_message_and_history_names_them(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Seen."], "eos_token")
    (tmp_path / "notes.txt").write_text("the secret word is \x1b[31mplover\x1b[0m\n")
    terminal = terminals("chat", "--no-history", "--no-log", "--endpoint", tgi_endpoint.url)
    terminal.wait_prompt()
    terminal.say("/files")
    terminal.wait_for("nothing attached")
    terminal.say("/file notes.txt")
    terminal.wait_for(lambda s: "attached notes.txt (" in s and terminal.at_prompt(s))
    terminal.say("/run printf 'out line\\n'; echo 'err line' >&2; exit 3")
    terminal.wait_for(lambda s: "(2 attached," in s and terminal.at_prompt(s))
    terminal.say("/files")
    screen = terminal.wait_for(lambda s: "2 attached," in s and "/drop clears them" in s and terminal.at_prompt(s))
    assert "notes.txt — " in screen and " tokens" in screen and "exit status 3" in screen
    terminal.say("what is the word?")
    terminal.wait_for(lambda s: "Seen." in s and terminal.at_prompt(s))
    [request] = tgi_endpoint.requests
    command = "output of `printf 'out line\\n'; echo 'err line' >&2; exit 3` (exit status 3)"
    assert request.body["inputs"] == (
        "User: ----- BEGIN notes.txt -----\nthe secret word is plover\n----- END notes.txt -----\n\n"
        f"----- BEGIN {command} -----\nout line\nerr line\n----- END {command} -----\n\n"
        "what is the word?\nAssistant:"
    )
    terminal.say("/history")
    screen = terminal.wait_for(lambda s: "attached: notes.txt (" in s and terminal.at_prompt(s))
    assert "You: what is the word?" in screen and "plover" not in screen  # named, not dumped
    # Sent once: the next message goes without them (they stay in the conversation's context).
    terminal.say("/files")
    terminal.wait_for(lambda s: s.count("nothing attached") == 2)


def test_sources_that_do_not_fit_keep_the_message_and_the_attachments(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Short."], "eos_token")
    (tmp_path / "big.log").write_text("line of a log\n" * 2200)
    terminal = terminals("chat", "--no-history", "--no-log", "--endpoint", tgi_endpoint.url)
    terminal.wait_prompt()
    terminal.say("/file big.log")
    terminal.wait_for(lambda s: "attached big.log (" in s and terminal.at_prompt(s))
    terminal.say("summarise it")
    screen = terminal.wait_for(lambda s: "the attached sources are kept" in s)
    assert "do not fit" in screen and "largest: big.log" in screen and "nothing was sent" in screen
    terminal.wait_for(lambda s: terminal.prompt_line() == ">>> summarise it")  # the message is back
    assert tgi_endpoint.requests == []
    terminal.keys("C-u")  # clear the line
    terminal.say("/drop")
    terminal.wait_for("dropped 1 attached source")
    terminal.say("/file missing.txt")
    terminal.wait_for("error: cannot read missing.txt: no such file or folder")
    terminal.say("/file /dev/zero")
    terminal.wait_for("error: cannot read /dev/zero: it is a character device, not a regular file")
    terminal.say("hello")
    terminal.wait_for(lambda s: "Short." in s and terminal.at_prompt(s))
    assert tgi_endpoint.requests[0].body["inputs"] == "User: hello\nAssistant:"


def test_image_attaches_a_picture_for_a_model_that_sees(terminals, tgi_endpoint, tmp_path):
    import base64

    from test_images import png

    tgi_endpoint.stream([" Red."], "eos_token")
    (tmp_path / "red.png").write_bytes(png())
    terminal = terminals("chat", "--no-history", "--no-log", "--endpoint", tgi_endpoint.url)
    terminal.wait_prompt()
    terminal.say("/image notes.txt")
    terminal.wait_for("error: cannot read notes.txt: no such file or folder")
    terminal.say("/image red.png")
    terminal.wait_for(lambda s: "attached red.png (765 tokens)" in s and terminal.at_prompt(s))
    terminal.say("what colour?")
    terminal.wait_for(lambda s: "Red." in s and terminal.at_prompt(s))
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    assert tgi_endpoint.requests[0].body["inputs"] == f"User: ![red.png]({url})\n\nwhat colour?\nAssistant:"
    terminal.say("/history")
    screen = terminal.wait_for(lambda s: "attached: red.png (765 tokens)" in s and terminal.at_prompt(s))
    assert "base64" not in screen


def test_chat_sf_puts_a_source_in_the_system_message_shown_by_name(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Brief."], "eos_token")
    (tmp_path / "rules.md").write_text("rule: answer in one word\n")
    terminal = terminals("chat", "--no-history", "--no-log", "--endpoint", tgi_endpoint.url, "--sf", "rules.md")
    terminal.wait_prompt()
    terminal.say("hi")
    terminal.wait_for(lambda s: "Brief." in s and terminal.at_prompt(s))
    assert tgi_endpoint.requests[0].body["inputs"] == (
        "System:----- BEGIN rules.md -----\nrule: answer in one word\n----- END rules.md -----\nUser: hi\nAssistant:"
    )
    terminal.say("/history")
    screen = terminal.wait_for(lambda s: "System: [source: rules.md]" in s and terminal.at_prompt(s))
    assert "answer in one word" not in screen

"""Issue 9, conversation commands: /retry, /undo, /continue, /model, /stats, /show, /copy,
the hint on leaving an unsaved conversation, the notice when older turns are left out,
and the bottom toolbar — in a real pseudo-terminal on the bundled model."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from repl_helpers import FALCONCHAT, QUICK, TIMEOUT, isolated_env, pexpect, write_config

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

FRANCE = "What is the capital of France?"


def test_retry_replaces_the_last_reply_with_a_new_one(chats):
    chat = chats("--max-new-tokens", "24")
    chat.say("/set temperature 1")
    chat.say("/set seed 1")
    chat.say("Tell me a short story about a cat.")
    first = chat.history()
    assert len(first) == 1, first
    old_reply = first[0][1]
    assert old_reply

    chat.say("/set seed 2")
    chat.say("/retry")
    retried = chat.history()
    assert len(retried) == 1, retried  # replaced, not added
    assert retried[0][0] == "Tell me a short story about a cat."
    assert retried[0][1] != old_reply


def test_retry_after_two_exchanges_only_touches_the_last(chats):
    chat = chats()
    chat.say(FRANCE)
    chat.say("What is the capital of Italy?")
    before = chat.history()
    chat.say("/set temperature 1")
    chat.say("/set seed 5")
    chat.say("/retry")
    after = chat.history()
    assert len(after) == 2
    assert after[0] == before[0]
    assert after[1][0] == "What is the capital of Italy?"


def test_retry_with_nothing_to_retry(chats):
    chat = chats()
    assert "nothing to retry" in chat.say("/retry")
    assert chat.history() == []


def test_undo_drops_the_last_exchange(chats):
    chat = chats()
    chat.say(FRANCE)
    chat.say("What is the capital of Italy?")
    assert len(chat.history()) == 2
    assert "dropped the last exchange" in chat.say("/undo")
    assert [user for user, _ in chat.history()] == [FRANCE]
    chat.say("/undo")
    assert chat.history() == []
    assert "nothing to undo" in chat.say("/undo")


def test_continue_after_a_length_stop_extends_the_same_reply(chats):
    chat = chats("--max-new-tokens", "6")  # so few that any reply to a counting request reaches the limit
    shown = chat.say("Count from one to one hundred in words, one per line.")
    assert "stopped at max_new_tokens = 6" in shown
    before = chat.history()
    assert len(before) == 1
    chat.say("/continue")
    after = chat.history()
    assert len(after) == 1, after  # the same exchange, not a new one
    assert after[0][0] == before[0][0]
    assert len(after[0][1]) > len(before[0][1])
    assert after[0][1].startswith(before[0][1][:20])


def test_continue_when_the_reply_is_complete_is_a_notice(chats):
    chat = chats("--stop", ".")
    shown = chat.say(FRANCE)
    assert "stopped at max_new_tokens" not in shown  # it ended on its own, at the stop sequence
    before = chat.history()
    assert "the last reply is complete" in chat.say("/continue")
    assert chat.history() == before


def test_continue_with_nothing_to_continue(chats):
    chat = chats()
    assert "nothing to continue" in chat.say("/continue")


@pytest.fixture
def other_model(tmp_path):
    from falconchat.backends.gguf import bundled_model_path

    write_config(tmp_path, f'[models.other]\nbackend = "local"\nmodel_path = "{bundled_model_path()}"\n')


def test_model_switch_keeps_the_history(chats, other_model):
    chat = chats()
    chat.say(FRANCE)
    before = chat.history()
    shown = chat.say("/model other")
    assert "now talking to other" in shown
    assert "other" in chat.say("/show")
    both = ("smollm2", "other")  # each reply is labelled with the model that wrote it
    after = chat.history(model=both)
    assert [user for user, _ in after] == [user for user, _ in before]
    assert after[0][1] == before[0][1]
    chat.say("What is the capital of Italy?")
    assert [user for user, reply in chat.history(model=both) if reply] == [FRANCE, "What is the capital of Italy?"]
    assert [user for user, reply in chat.history(model="other") if reply] == ["What is the capital of Italy?"]


def test_model_with_an_unknown_name_is_a_notice(chats, other_model):
    chat = chats()
    chat.say(FRANCE)
    shown = chat.say("/model nosuchmodel")
    assert "unknown model" in shown and "nosuchmodel" in shown
    assert "other" in shown and "smollm2" in shown  # the known ones are listed
    assert "smollm2 (bundled, local)" in chat.say("/show")
    assert len(chat.history()) == 1
    assert chat.child.isalive()


def test_model_whose_file_is_missing_keeps_the_current_model(chats, tmp_path):
    write_config(tmp_path, '[models.broken]\nbackend = "local"\nmodel_path = "/nonexistent/model.gguf"\n')
    chat = chats()
    chat.say(FRANCE)
    shown = chat.say("/model broken")
    assert "error" in shown
    assert "smollm2 (bundled, local)" in chat.say("/show")
    chat.say("What is the capital of Italy?")
    assert [user for user, reply in chat.history() if reply] == [FRANCE, "What is the capital of Italy?"]


def test_stats_on_prints_a_stats_line_after_each_reply(chats):
    chat = chats()
    assert "tokens/s" not in chat.say(FRANCE)
    assert "stats on" in chat.say("/stats on")
    shown = chat.say("What is the capital of Italy?")
    assert re.search(r"\d+ tokens in \d+\.\d+s \(\d+\.\d tokens/s\) · first token \d+\.\d+s", shown), shown
    assert "stats off" in chat.say("/stats off")
    assert "tokens/s" not in chat.say("What is the capital of Spain?")


def test_verbose_flag_turns_stats_on(chats):
    chat = chats("-v")
    assert "tokens/s" in chat.say(FRANCE)
    assert "stats: on" in chat.say("/show")


def test_show_lists_the_settings(chats):
    chat = chats()
    chat.say("/set top_p 0.5")
    chat.say("/system Be brief.")
    shown = chat.say("/show")
    assert "model: smollm2 (bundled, local)" in shown
    assert "system: Be brief." in shown
    for line in (
        "temperature = 0.0",
        "max_new_tokens = 16",
        "top_p = 0.5",
        "top_k = 50",
        "repetition_penalty = 1.0",
        "seed = none",
    ):
        assert line in shown, shown
    assert "session: (none" in shown
    assert "input history: on" in shown


def test_set_accepts_every_sampling_value_and_refuses_bad_ones(chats):
    chat = chats()
    for name, value, shown in (
        ("temperature", "0.3", "0.3"),
        ("max_new_tokens", "9", "9"),
        ("top_p", "0.8", "0.8"),
        ("top_k", "3", "3"),
        ("repetition_penalty", "1.2", "1.2"),
        ("seed", "77", "77"),
        ("stop", "END", "END"),
        ("stop", '["A:", "B:"]', "A:, B:"),
    ):
        assert f"{name} = {shown}" in chat.say(f"/set {name} {value}")
    assert "invalid top-p" in chat.say("/set top_p 7")
    shown = chat.say("/show")
    assert "top_p = 0.8" in shown and "stop = A:, B:" in shown
    assert "frequency_penalty" not in shown  # serve's OpenAI-only knobs: nothing the chat can change


def test_set_stop_ends_the_reply_there_and_none_clears_it(chats, tgi_endpoint):
    """/show listed `stop = none`, and `/set stop …` was refused."""
    tgi_endpoint.stream([" one", " two", " HALT", " three"], "eos_token")
    chat = chats("--endpoint", tgi_endpoint.url)
    assert "stop = HALT" in chat.say("/set stop HALT")
    shown = chat.say("count")
    assert "one two" in shown and "three" not in shown, shown
    assert "HALT" in tgi_endpoint.requests[-1].body["parameters"]["stop"]
    assert "stop = none" in chat.say("/set stop none")
    assert "three" in chat.say("count again")
    assert "HALT" not in (tgi_endpoint.requests[-1].body["parameters"].get("stop") or [])


def test_copy_prints_the_last_reply_plain_without_a_clipboard(chats, tmp_path):
    tools = ("pbcopy", "wl-copy", "xclip", "xsel")
    path = os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if not any(os.path.exists(os.path.join(d, t)) for t in tools)
    )
    chat = chats(env={"PATH": path})
    assert "no reply to copy" in chat.say("/copy")
    chat.say(FRANCE)
    reply = chat.history()[0][1]
    shown = chat.say("/copy")
    if any(shutil.which(tool, path=path) for tool in tools):  # pragma: no cover - a clipboard after all
        assert "copied" in shown
    else:
        assert "no clipboard" in shown
        # After the notice's line: the reply as it is, no Markdown styling or layout.
        printed = chat.raw.split("to select:", 1)[1].split("\n", 1)[1]
        printed = re.sub(r"(\x1b\[\?[0-9;]*[hl])+$", "", printed)
        assert "\x1b[" not in printed
        assert printed.replace("\r\n", "\n").strip() == reply


def test_leaving_an_unsaved_conversation_of_two_exchanges_says_how_to_keep_it(chats):
    chat = chats()
    chat.say(FRANCE)
    chat.say("What is the capital of Italy?")
    status, said = chat.ctrl_d()
    assert status == 0
    hints = [line for line in said.splitlines() if "/save" in line]
    assert len(hints) == 1, said
    assert "--session" in hints[0]


def test_no_hint_after_one_exchange_or_once_saved(chats):
    one = chats()
    one.say(FRANCE)
    assert "/save" not in one.ctrl_d()[1]

    saved = chats()
    saved.say(FRANCE)
    saved.say("What is the capital of Italy?")
    saved.say("/save kept")
    saved.child.send("/exit\r")
    status, said = saved.wait_exit()
    assert status == 0
    assert "/save" not in said


def test_older_turns_left_out_of_the_prompt_are_announced(chats):
    chat = chats("--max-new-tokens", "8", env={"FALCONCHAT_CONTEXT_LENGTH": "256"})
    long_message = "Please remember these words: " + ", ".join(f"word{i}" for i in range(30)) + "."
    notices = [chat.say(long_message) for _ in range(4)]
    assert not re.search(r"left out", notices[0])
    assert any(re.search(r"left out the \d+ oldest turns? to fit the model's context", n) for n in notices), notices
    assert len(chat.history()) == 4  # left out of the prompt, not forgotten


LEFT_OUT = r"left out the \d+ oldest turns? to fit the model's context"


def test_a_context_of_300_trims_instead_of_crashing(chats):
    """Issue 23 item 1, the report's steps: llama.cpp pads 300 to 512 while llama-cpp-python
    sizes its arrays to 300; the budget used 512 and the chat crashed, the conversation lost."""
    chat = chats("--max-new-tokens", "60", "-s", "You are terse.", env={"FALCONCHAT_CONTEXT_LENGTH": "300"})
    shown = [chat.say(f"Tell me about {planet}.") for planet in ("the moon", "the sun", "Mars", "Venus", "Jupiter")]
    shown += [chat.say("Remember these: " + " ".join(f"word{i}" for i in range(40)))]
    assert not any("error" in s for s in shown), shown
    assert any(re.search(LEFT_OUT, s) for s in shown), shown
    assert len(chat.history()) == 6  # every turn kept, the chat still open


def test_a_context_of_1000_refuses_what_only_llama_cpp_s_1024_would_hold_then_trims(chats):
    chat = chats("--max-new-tokens", "8", env={"FALCONCHAT_CONTEXT_LENGTH": "1000"})
    # About 1005 tokens: under the old budget (1024 - 8), over the real one (1000 - 8).
    shown = chat.say(" ".join(["apple"] * 975))
    assert re.search(r"error: the message needs \d+ tokens but only 992 fit", shown), shown
    shown = [chat.say(f"Count the pears: {' '.join(['pear'] * 400)}") for _ in range(3)]
    assert not any("error" in s for s in shown), shown
    assert any(re.search(LEFT_OUT, s) for s in shown), shown
    assert len(chat.history()) == 3


def test_the_bottom_toolbar_shows_model_temperature_and_context_use(tmp_path):
    """The toolbar needs the terminal to answer cursor-position requests: this one does."""
    child = pexpect.spawn(
        FALCONCHAT[0],
        [*FALCONCHAT[1:], *QUICK],
        cwd=str(tmp_path),
        env=isolated_env(tmp_path),
        timeout=TIMEOUT,
        encoding="utf-8",
        dimensions=(30, 120),
    )
    try:
        child.expect_exact("\x1b[6n")
        child.send("\x1b[5;1R")
        child.expect(r"smollm2 · greedy · context (\d+)/(\d+) tokens")
        empty, window = int(child.match.group(1)), int(child.match.group(2))
        assert window == 4096
        child.send(FRANCE + "\r")
        child.expect_exact("\x1b[?2004l")  # the prompt closed: the reply streams
        child.expect_exact("\x1b[6n")  # the next prompt
        child.send("\x1b[20;1R")
        child.expect(r"context (\d+)/4096 tokens")
        assert int(child.match.group(1)) > empty + 10
        child.send("/temp 0.5\r")
        child.expect_exact("temperature = 0.5")
        child.expect_exact("\x1b[6n")
        child.send("\x1b[25;1R")
        child.expect(r"smollm2 · temp 0.5 · context")
    finally:
        child.terminate(force=True)

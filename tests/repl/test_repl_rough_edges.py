"""Issue 23 item 21, the REPL's small rough edges, driven as the report's user did: `exit` and
`quit` without a slash, `/temp` alone, reasoning from two sources, and the last reply's
reasoning shown again with /reasoning (tmux: a real terminal, where reasoning is collapsed)."""

from __future__ import annotations

import pytest

from falconchat.thinking import separate_reasoning
from falconchat.types import Done, ReasoningDelta, TextDelta
from openai_endpoint import OpenAIEndpoint
from processes import falconchat, isolated_env
from tmux_terminal import have_tmux

pytestmark = pytest.mark.process  # the real falconchat, in a terminal or with its input a pipe


@pytest.mark.parametrize("word", ["exit", "quit", "Quit "])
def test_exit_or_quit_without_a_slash_leaves_and_sends_nothing(chats, tgi_endpoint, word):
    tgi_endpoint.stream([" Noted."], "eos_token")
    chat = chats("--endpoint", tgi_endpoint.url)
    chat.child.send(word + "\r")
    status, _said = chat.wait_exit()
    assert status == 0
    assert tgi_endpoint.requests == []  # the word never reached the model


def test_a_piped_exit_without_a_slash_ends_the_chat(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Noted."], "eos_token")
    done = falconchat(
        "chat", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=isolated_env(tmp_path),
        input=b"hello\nexit\nnever sent\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert [r.body["inputs"].count("never sent") for r in tgi_endpoint.requests] == [0]


def test_temp_alone_shows_the_temperature(chats):
    chat = chats()
    shown = chat.say("/temp")
    assert "temperature = 0 (greedy)" in shown and "usage: /set" not in shown
    chat.say("/temp 0.4")
    assert "temperature = 0.4" in chat.say("/temp")


def test_reasoning_from_the_field_and_from_think_tags_is_not_glued():
    def events():  # a stream, as a backend gives it: a generator
        yield ReasoningDelta("Let me think about colours.")  # reasoning_content
        yield TextDelta("<think>hidden plan</think>")  # and <think> in the content
        yield TextDelta("Blue.")
        yield Done("stop")

    reasoning = "".join(e.text for e in separate_reasoning(events()) if isinstance(e, ReasoningDelta))
    assert "colours.hidden" not in reasoning
    assert reasoning.split() == ["Let", "me", "think", "about", "colours.", "hidden", "plan"]


@pytest.mark.skipif(not have_tmux(), reason="needs tmux")
def test_reasoning_shows_the_last_replys_reasoning_on_the_terminal(terminals, tmp_path):
    endpoint = OpenAIEndpoint()
    try:
        endpoint.reply(["<think>hidden plan</think>", "Blue."], reasoning=["Let me think about colours."])
        terminal = terminals("chat", "--no-history", "--endpoint", endpoint.url)
        terminal.wait_prompt()
        terminal.say("/reasoning")
        terminal.wait_for("the last reply came with no reasoning")
        terminal.say("which colour?")
        screen = terminal.wait_for(lambda s: "Blue." in s and terminal.at_prompt(s))
        assert "/reasoning shows it" in screen and "hidden plan" not in screen  # collapsed
        terminal.say("/reasoning")
        screen = terminal.wait_for(lambda s: "hidden plan" in s and terminal.at_prompt(s))
        assert "Let me think about colours." in screen and "colours.hidden" not in screen
    finally:
        endpoint.close()

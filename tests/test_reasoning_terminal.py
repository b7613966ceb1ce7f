"""Reasoning on a real terminal (tmux: it answers cursor-position requests, and its screen is
what a user sees): dimmed and apart above the reply, collapsed to one line when the reply
starts, kept whole with --show-reasoning; never sent back in the next turn's prompt."""

from __future__ import annotations

import pytest

from openai_endpoint import OpenAIEndpoint
from tmux_terminal import TmuxTerminal, have_tmux

pytestmark = [pytest.mark.process, pytest.mark.skipif(not have_tmux(), reason="needs tmux")]

REASONING = ["Hmm, the user", " asks for a name.", "\nA short one", " will do."]
THINK = ["<th", "ink>Hmm, the user", " asks for a name.\nA short one will do.</th", "ink>", "\n\n", "Ada", " it is."]


@pytest.fixture
def endpoint():
    server = OpenAIEndpoint()
    yield server
    server.close()


@pytest.fixture
def terminals():
    opened: list[TmuxTerminal] = []

    def open_one(home, *args: str) -> TmuxTerminal:
        terminal = TmuxTerminal(home, *args)
        opened.append(terminal)
        return terminal

    yield open_one
    for terminal in opened:
        terminal.close()


def test_ask_collapses_the_reasoning_to_one_line(tmp_path, endpoint, terminals):
    endpoint.reply(["Ada", " it is."], reasoning=REASONING, delay_s=0.5)
    terminal = terminals(tmp_path, "ask", "--endpoint", endpoint.url, "who?")
    live = terminal.wait_for("asks for a name")  # drawn, dimmed, while it lasts
    assert "thinking…" in live and "Ada it is." not in live
    assert terminal.wait_exit() == 0
    screen = terminal.scrollback()
    assert "Ada it is." in screen and "▸ reasoned for" in screen
    assert "asks for a name" not in screen  # drawn while it lasted, gone once the reply started
    assert screen.index("▸ reasoned for") < screen.index("Ada it is.")


def test_show_reasoning_keeps_it_above_the_reply(tmp_path, endpoint, terminals):
    endpoint.reply(THINK, delay_s=0.05)
    terminal = terminals(tmp_path, "ask", "--show-reasoning", "--endpoint", endpoint.url, "who?")
    assert terminal.wait_exit() == 0
    screen = terminal.scrollback(joined=True)
    assert "Hmm, the user asks for a name." in screen and "A short one will do." in screen
    assert screen.index("A short one will do.") < screen.index("Ada it is.")
    assert "<think>" not in screen and "</think>" not in screen


def test_the_repl_never_sends_reasoning_back(tmp_path, endpoint, terminals):
    endpoint.reply(THINK, delay_s=0.05)
    terminal = terminals(tmp_path, "chat", "--no-history", "--endpoint", endpoint.url)
    terminal.wait_for(">>>")
    terminal.say("who?")
    terminal.wait_for(lambda s: "Ada it is." in s and s.rstrip().count(">>>") >= 2)
    screen = terminal.screen()
    assert "▸ reasoned for" in screen and "asks for a name" not in screen and "think>" not in screen
    terminal.say("and then?")
    terminal.wait_for(lambda s: s.count("Ada it is.") >= 2)
    _first, second = endpoint.posts()
    assert second["messages"][-2] == {"role": "assistant", "content": "Ada it is."}
    assert "asks for a name" not in str(second["messages"]) and "think>" not in str(second["messages"])
    terminal.keys("C-d")
    assert terminal.wait_exit() == 0


def test_the_repl_says_when_a_reply_does_not_match_the_schema(tmp_path, endpoint, terminals):
    endpoint.reply(["Sure! Ada, 36."])
    endpoint.reply(['{"name": "Ada", "age": 36}'])
    terminal = terminals(tmp_path, "chat", "--no-history", "--endpoint", endpoint.url, "--schema", "name, age int")
    terminal.wait_for(">>>")
    terminal.say("who?")
    screen = terminal.wait_for(lambda s: "Sure! Ada, 36." in s and s.rstrip().count(">>>") >= 2)
    assert "error: the reply is not JSON" in screen
    terminal.say("again")
    screen = terminal.wait_for(lambda s: '"age": 36' in s and s.rstrip().count(">>>") >= 3)
    assert screen.count("error:") == 1  # the valid one passes quietly
    assert endpoint.posts()[0]["response_format"]["type"] == "json_schema"
    terminal.keys("C-d")
    assert terminal.wait_exit() == 0


def test_narrowing_the_window_while_it_reasons_leaves_none_of_the_reasoning_behind(tmp_path, endpoint, terminals):
    """The live reasoning is erased by the rows its lines take at the terminal's width now:
    drawn at 100 columns and re-wrapped at 40, erasing one row per line drawn left rows behind."""
    endpoint.reply([f"line {i:02d}\n" for i in range(40)])  # a full screen: the chat so far
    endpoint.reply(["Ada", " it is."], reasoning=[f" r{i:03d}" for i in range(1, 81)], delay_s=0.1)
    terminal = terminals(tmp_path, "--endpoint", endpoint.url)
    terminal.wait_for(lambda s: "context" in terminal.bottom_line())  # the toolbar: prompt-toolkit is drawing
    terminal.say("fill the screen")
    terminal.wait_for("line 39")
    terminal.wait_prompt()
    terminal.say("who?")
    terminal.wait_for("r025")  # the reasoning, live: one line of about 100 columns
    terminal.resize(40, 30)
    terminal.wait_for("Ada it is.", timeout=30)
    terminal.wait_prompt()
    shown = terminal.scrollback(joined=True)
    assert "▸ reasoned for" in shown
    assert "r0" not in shown[shown.index(">>> who?") :], shown  # every word of it erased
    terminal.keys("C-d")
    assert terminal.wait_exit() == 0

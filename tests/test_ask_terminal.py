"""`ask` on a real terminal (tmux), as the report of issue 23 saw it: a constrained reply is
validated before anything reaches stdout, so while it is written one line on stderr counts its
tokens (item 2: a user waited minutes at a blank screen), erased when the JSON is shown; code
in a reply is coloured with the terminal's own palette (item 4)."""

from __future__ import annotations

import re

import pytest

from openai_endpoint import OpenAIEndpoint
from tmux_terminal import TmuxTerminal, have_tmux

pytestmark = [pytest.mark.process, pytest.mark.skipif(not have_tmux(), reason="needs tmux")]


@pytest.fixture
def endpoint():
    server = OpenAIEndpoint()
    yield server
    server.close()


def test_a_schema_reply_counts_its_tokens_on_the_terminal_then_shows_the_json(tmp_path, endpoint):
    endpoint.reply(['{"name": ', '"Ada"', ", ", '"age": ', "36", "}"], delay_s=0.6)
    term = TmuxTerminal(tmp_path, "ask", "--endpoint", endpoint.url, "--schema", "name, age int", "who?")
    try:
        counting = re.compile(r"writing JSON… ([1-9]\d*)/512 tokens · \d+s \(Ctrl-C stops\)")
        term.wait_for(lambda screen: bool(counting.search(screen)))
        assert term.wait_exit() == 0
        shown = term.screen()
        assert '"name"' in shown and '"Ada"' in shown and "36" in shown
        assert "writing JSON" not in shown  # erased before the JSON was printed
    finally:
        term.close()


def test_code_in_a_reply_uses_the_terminal_s_palette(tmp_path, endpoint):
    """Issue 23 item 4, as the report saw it (tmux capture-pane -e): code was drawn in monokai's
    near-white 38;5;231 with no background, invisible on a light terminal."""
    endpoint.reply(["Here:\n\n```python\n", "result = compute(alpha, 42)  # sum\n", 'print("done", result)\n', "```\n"])
    term = TmuxTerminal(tmp_path, "ask", "--endpoint", endpoint.url, "code please")
    try:
        assert term.wait_exit() == 0
        drawn = term._tmux("capture-pane", "-p", "-e", "-t", "t")  # with the colours tmux holds
        code = [line for line in drawn.splitlines() if "compute" in line or "print" in line]
        assert code, drawn
        sgr = [p for line in code for m in re.finditer(r"\x1b\[([0-9;]*)m", line) for p in [m.group(1)]]
        assert sgr, code  # highlighted…
        for params in sgr:
            assert not re.search(r"(^|;)(38|48);[25];", params), params  # …never in 256 or true colours
            numbers = {int(n) for n in params.split(";") if n}
            assert not numbers & {30, 33, 37, 90, 93, 97}, params  # nor black, yellow or white
    finally:
        term.close()

"""The hint after a reply cut short names what works for it here: against a server whose own
chat template writes the prompt (format "chat"), /continue is refused — the template closes the
last message — so the chat says /retry (with a higher limit when the limit cut it), not
"/continue goes on". In tmux, against a scripted OpenAI-compatible server."""

from __future__ import annotations

import pytest
from repl_helpers import write_config

from openai_wire import WireServer, chunked, reply

pytestmark = pytest.mark.process  # the real falconchat in tmux, and a server

CONFIG = """
[models.served]
backend = "openai"
endpoint = "{url}/v1"
format = "chat"
"""


def one_line(text: str) -> str:
    return " ".join(text.split())


def toolbar_drawn(screen: str) -> bool:
    bottom = screen.rstrip("\n").split("\n")[-1]
    return "context" in bottom and "tokens" in bottom


def test_a_chat_format_reply_cut_at_the_limit_points_at_retry_not_continue(terminals, tmp_path):
    with WireServer(chunked(reply("One", " two", " three", finish="length"))) as server:
        write_config(tmp_path, CONFIG.format(url=server.url))
        term = terminals("-m", "served", "--max-new-tokens", "3")
        term.wait_for(toolbar_drawn)
        term.say("count")
        shown = one_line(term.wait_for("stopped at max_new_tokens"))
        assert "/set max_new_tokens N, then /retry" in shown, shown
        assert "/continue goes on" not in shown, shown
        term.say("/continue")  # and indeed it is refused, naming /retry
        shown = one_line(term.wait_for("/retry works"))
        term.keys("C-d")
        assert term.wait_exit() == 0

"""Issue 23 item 19, in tmux (a terminal that draws the bottom toolbar): once older turns are
left out of the prompt, the toolbar counts the prompt as it is sent (it showed
`context 684/512 tokens`) and says how many turns are left out."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.process  # the real falconchat in a real terminal

CONTEXT = re.compile(r"context (\d+)/(\d+) tokens( \((\d+) turns? left out\))?")


def test_the_toolbar_counts_what_is_sent_once_turns_are_left_out(terminals):
    term = terminals("-t", "0", "--max-new-tokens", "8", env={"FALCONCHAT_CONTEXT_LENGTH": "256"})
    term.wait_for(lambda s: CONTEXT.search(term.bottom_line()) is not None)
    long_message = "Please remember these words: " + ", ".join(f"word{i}" for i in range(30)) + "."
    for sent in range(1, 5):
        term.say(long_message)
        # the reply is over when the scrollback holds one more prompt, bare, and the toolbar is back
        term.wait_for(
            lambda s, sent=sent: (
                len(re.findall(r"^>>> ?$", s, re.M)) >= 1
                and s.count(">>> Please remember") >= sent
                and term.at_prompt()
            ),
            whole=True,
        )
    assert "left out the" in term.scrollback(joined=True)  # the notice: older turns no longer fit
    shown = term.wait_for(lambda s: (m := CONTEXT.search(term.bottom_line())) is not None and m.group(3) is not None)
    used, length, _, left_out = CONTEXT.search(term.bottom_line()).groups()
    assert int(length) == 256
    assert int(used) <= 256 - 8, shown  # the prompt as sent leaves max_new_tokens for the reply
    assert int(left_out) >= 1


def test_the_toolbar_counts_what_is_attached_to_the_next_message(terminals, tmp_path):
    """/file's source goes with the next message: the toolbar counts it before it is sent (it
    showed the conversation alone), and /drop takes it off again."""
    (tmp_path / "notes.md").write_text("The harbour opens at six. " * 60)
    term = terminals("-t", "0", "--max-new-tokens", "8")

    def used() -> int:
        found = CONTEXT.search(term.bottom_line())
        return int(found.group(1)) if found else -1

    term.wait_for(lambda s: used() > 0)
    bare = used()
    term.say("/file notes.md")
    term.wait_for(lambda s: used() > bare + 300)  # the file is ~360 tokens
    attached = used()
    term.say("/drop")
    term.wait_for(lambda s: used() == bare)
    assert attached - bare > 300

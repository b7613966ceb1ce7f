"""`batch`'s progress bar in a real terminal (tmux), against a scripted endpoint whose
stream never ends (issue 15, item 14): while the first item decodes, tokens/s is not 0 and
the ETA makes no guess from nothing."""

from __future__ import annotations

import re

import pytest

from tmux_terminal import TmuxTerminal, have_tmux

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not have_tmux(), reason="tmux is not installed: the terminal test cannot run"),
]


def test_the_bar_counts_tokens_of_an_item_still_decoding(tmp_path, tgi_endpoint):
    tgi_endpoint.forever(interval=0.05)
    (tmp_path / "in.txt").write_text("one\ntwo\nthree\n")
    term = TmuxTerminal(tmp_path, "batch", "in.txt", "--endpoint", tgi_endpoint.url, "-j", "1", width=120)
    try:
        rate = re.compile(r"0/3 .*?(\d+) tokens/s")
        screen = term.wait_for(lambda s: bool((m := rate.search(s)) and int(m.group(1)) > 0))
        assert "ETA -:--:--" in screen  # nothing finished yet: no estimate
    finally:
        term.close()


def test_with_replicas_the_bar_shows_each_one_s_share_and_errors(tmp_path):
    from tgi_endpoint import TgiEndpoint

    with TgiEndpoint() as first, TgiEndpoint() as second:
        first.forever(interval=0.05)
        second.forever(interval=0.05)
        (tmp_path / "in.txt").write_text("one\ntwo\nthree\nfour\n")
        args = ("batch", "in.txt", "--endpoint", first.url, "--endpoint", second.url, "-j", "2")
        term = TmuxTerminal(tmp_path, *args, width=120)
        try:
            rows = [
                re.compile(
                    rf"{re.escape(url.removeprefix('http://'))} .*0/4 50% of requests · 0 errors · 1 in flight · 0 tokens/s"
                )
                for url in (first.url, second.url)
            ]
            term.wait_for(lambda s: all(row.search(s) for row in rows) and "0/4 0 failed · 2 in flight" in s)
        finally:
            term.close()

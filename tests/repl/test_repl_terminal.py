"""Issue 23: the chat's terminal behaviour, in tmux (a terminal that answers cursor-position
requests and reflows, as users' do): keys typed while the chat starts, Ctrl-C before any
text, the prompt when replies go down a pipe, the waiting line, Ctrl-L during a reply."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from processes import FALCONCHAT, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat in tmux, and endpoints

WAITING = "Ctrl-C stops"  # the waiting line: `⠋ waiting for the model 3s · Ctrl-C stops · …`


def toolbar_drawn(screen: str) -> bool:
    bottom = screen.rstrip("\n").split("\n")[-1]
    return "context" in bottom and "tokens" in bottom


def first_token_after(seconds: float, words: list[str]):
    """A TGI stream that starts at once and sends its first token `seconds` later (a cold endpoint)."""

    def run(reply) -> None:
        reply.start_stream()
        time.sleep(seconds)
        for i, text in enumerate(words):
            last = i == len(words) - 1
            details = {"finish_reason": "eos_token", "generated_tokens": len(words), "seed": None}
            reply.token(text, generated_text="".join(words) if last else None, details=details if last else None)
            time.sleep(0.05)
        reply.end_stream()

    return run


# ---- 5: keys typed while the chat starts -------------------------------------------------


def test_keys_typed_as_the_chat_starts_are_not_echoed_but_wait_for_the_prompt(terminals, silent_url):
    """Typed at once (while Python starts, then during the endpoint's 5 s probe, then as the
    banner shows): never echoed raw, glued to the banner; the prompt's first text."""
    term = terminals("--endpoint", silent_url)
    term.type("early ")  # the process has only just started
    time.sleep(2)  # probing the endpoint
    term.type("bird")
    term.wait_for("Ctrl-D to quit", timeout=20)  # the banner
    term.type(" sings")  # in the second the chat gives the endpoint before the prompt
    term.wait_for(lambda s: term.prompt_line() == ">>> early bird sings", timeout=20)
    shown = term.scrollback(joined=True)
    assert shown.count("early") == 1 and shown.count("sings") == 1, shown
    assert shown.splitlines()[0].startswith("falconchat "), shown  # the banner, nothing before it
    term.keys("C-u", "C-d")
    assert term.wait_exit(timeout=10) == 0


def test_ctrl_d_typed_while_the_endpoint_is_probed_ends_the_chat(terminals, silent_url):
    term = terminals("--endpoint", silent_url)
    time.sleep(2)  # the process is waiting for the endpoint to say which API it speaks
    assert ">>>" not in term.screen()
    term.keys("C-d")
    assert term.wait_exit(timeout=30) == 0


def test_ctrl_d_typed_as_the_banner_shows_ends_the_chat(terminals, silent_url):
    term = terminals("--endpoint", silent_url)
    term.wait_for("Ctrl-D to quit", timeout=20)  # the banner; the prompt opens up to a second later
    term.keys("C-d")
    assert term.wait_exit(timeout=30) == 0


# ---- 6: Ctrl-C before any text -------------------------------------------------------------


def test_ctrl_c_before_any_text_says_nothing_was_kept_every_time(terminals, tgi_endpoint):
    tgi_endpoint.hang()  # GET /info answers; every message is accepted and never answered
    term = terminals("--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    for n, message in enumerate(["one", "two", "three"], start=1):
        term.say(message)
        term.wait_for(lambda s, n=n: len(tgi_endpoint.requests) >= n, timeout=20)  # the request is out
        term.keys("C-c")
        term.wait_for(lambda s, n=n: s.count("nothing was kept") == n, timeout=20)
        term.wait_prompt()
    shown = term.scrollback(joined=True)
    assert "what was shown is kept" not in shown, shown
    term.say("/history")
    term.wait_for("(no exchanges yet)", timeout=20)
    term.keys("C-d")
    assert term.wait_exit() == 0


# ---- 12: replies down a pipe, the prompt on the terminal ------------------------------------


def test_with_replies_piped_the_prompt_is_drawn_on_the_terminal_and_only_replies_go_down_the_pipe(
    terminals, tgi_endpoint, tmp_path
):
    """`falconchat | tee chat.log`: stdout is a pipe, the keyboard and stderr a terminal. The prompt
    and its toolbar are drawn on the terminal (stderr, as shells do); stdout gets the replies."""
    tgi_endpoint.stream([" The sea", " is wide."], "eos_token")
    log = tmp_path / "chat.log"
    term = terminals("--endpoint", tgi_endpoint.url, stdout=log)
    term.wait_for(toolbar_drawn)
    term.say("hello")
    term.wait_for(lambda s: "is wide." in log.read_text(), timeout=20)
    screen = term.wait_for(lambda s: term.at_prompt(s) and toolbar_drawn(s), timeout=20)
    assert ">>> hello" in screen, screen
    term.keys("C-d")
    assert term.wait_exit() == 0
    assert log.read_text() == "The sea is wide.\n"  # no prompt, no toolbar, no carriage returns


# ---- 18: waiting for the first token --------------------------------------------------------


def test_while_the_first_token_is_awaited_a_line_says_so_and_that_ctrl_c_stops_it(terminals, tgi_endpoint):
    tgi_endpoint.hang()
    term = terminals("--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("waiting?")
    waiting = term.wait_for(WAITING, timeout=20)
    assert "waiting for the model" in waiting, waiting
    term.keys("C-c")
    screen = term.wait_for(lambda s: "nothing was kept" in s, timeout=20)
    assert WAITING not in screen, screen  # erased, not left above the notice
    term.keys("C-d")
    assert term.wait_exit() == 0


def test_the_waiting_line_is_erased_before_the_reply_draws(terminals, tgi_endpoint):
    tgi_endpoint.script(first_token_after(3, [" Cold", " start", " over."]))
    term = terminals("--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("are you there?")
    term.wait_for(WAITING, timeout=20)
    term.wait_for("Cold start over.", timeout=20)
    term.wait_prompt()
    shown = term.scrollback(joined=True)
    assert WAITING not in shown, shown
    reply_line = next(line for line in shown.splitlines() if "Cold start over." in line)
    assert reply_line.strip() == "Cold start over.", shown
    term.keys("C-d")
    assert term.wait_exit() == 0


def test_no_waiting_line_in_a_pipe(tgi_endpoint, tmp_path):
    tgi_endpoint.script(first_token_after(1, [" Piped", " reply."]))
    done = subprocess.run(
        [*FALCONCHAT, "--endpoint", tgi_endpoint.url],
        input=b"hello\n",
        capture_output=True,
        cwd=tmp_path,
        env=isolated_env(tmp_path),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == "Piped reply.\n"
    assert WAITING not in done.stderr.decode(), done.stderr


# ---- 20: Ctrl-L typed during a reply --------------------------------------------------------


def test_ctrl_l_typed_during_a_reply_leaves_no_raw_escape_at_the_next_prompt(terminals, tgi_endpoint):
    """Ctrl-L clears the screen and asks the terminal where the cursor is; its answer
    (ESC [ 1 ; 1 R) came while a command ran, and the terminal echoed it as `^[[1;1R`."""
    tgi_endpoint.script(first_token_after(0, [" word"] * 80))  # 4 s of reply
    term = terminals("--plain", "--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("talk a while")
    term.wait_for("word word word", timeout=20)
    term.say("/clear")  # typed ahead, while the reply streams
    term.keys("C-l")
    term.say("/model")
    term.wait_for("known:", timeout=20)  # /model's answer
    term.wait_prompt()
    shown = term.scrollback(joined=True)
    assert "^[" not in shown and "1;1R" not in shown, shown
    term.keys("C-d")
    assert term.wait_exit() == 0


# ---- 13: the window narrowed, then widened, mid-reply ----------------------------------------


def test_narrowing_the_window_mid_reply_shows_no_line_twice_and_widening_uses_the_new_width(terminals, tgi_endpoint):
    """tmux, narrowed, re-wraps the live lines onto more rows and pushes those that no longer
    fit above the screen, where no erase reaches: redrawn, they showed twice. And a COLUMNS
    the shell exported at the start kept every later line at that width."""
    words = [f" word{i:03d}" + ("\n" if i % 12 == 11 else "") for i in range(240)]  # lines of 96 columns
    narrowed, widened = threading.Event(), threading.Event()

    def reply(reply) -> None:
        reply.start_stream()
        for i, text in enumerate(words):
            if i in (79, 159):  # the view draws at a token, at most every 50 ms: the word before a wait is drawn
                time.sleep(0.1)
            if i == 80:
                narrowed.wait(20)  # the window is narrowed mid-reply, with 6 lines of it drawn
            if i == 160:
                widened.wait(20)
            last = i == len(words) - 1
            details = {"finish_reason": "eos_token", "generated_tokens": len(words), "seed": None}
            reply.token(text, generated_text="".join(words) if last else None, details=details if last else None)
            time.sleep(0.02)
        reply.end_stream()

    tgi_endpoint.script(reply)
    term = terminals("--endpoint", tgi_endpoint.url, env={"COLUMNS": "100", "LINES": "30"})
    term.wait_for(toolbar_drawn)
    term.say("many lines")
    term.wait_for("word079")  # 6 lines of 96 columns drawn, the 7th started
    term.resize(30, 30)
    narrowed.set()
    term.wait_for(lambda s: "word159" in term.scrollback(joined=True))  # (rows wrapped at 30, joined)
    term.resize(140, 30)
    widened.set()
    term.wait_for(lambda s: "word239" in term.scrollback(joined=True), timeout=30)
    term.wait_prompt()
    shown = term.scrollback(joined=True)
    for i in range(240):
        assert shown.count(f"word{i:03d}") == 1, (i, shown)
    # Each line at the window's width then (rows the terminal wrapped are joined back by -J).
    narrow = next(line for line in shown.splitlines() if "word130" in line)
    wide = next(line for line in shown.splitlines() if "word228" in line)
    assert len(narrow) <= 30 < len(wide), (narrow, wide)
    term.keys("C-d")
    assert term.wait_exit() == 0

"""Issue 15, "a chat that can't be broken": the REPL in tmux — a terminal that answers
cursor-position requests, so prompt-toolkit draws the bottom toolbar as a user sees it —
against a closed port, a socket that never answers, and a terminal that goes away."""

from __future__ import annotations

import json
import time

import pytest
from repl_helpers import sessions_dir, write_config

pytestmark = pytest.mark.process  # starts the real falconchat in tmux, and endpoints

TRAPS = ("Traceback", "Unhandled exception", "Press ENTER to continue")


def toolbar_drawn(screen: str) -> bool:
    bottom = screen.rstrip("\n").split("\n")[-1]
    return "context" in bottom and "tokens" in bottom


def no_trap(text: str) -> None:
    for trap in TRAPS:
        assert trap not in text, text


# ---- 1: a dead endpoint ------------------------------------------------------------------


def test_a_dead_endpoint_at_start_says_so_once_and_the_prompt_works(terminals, closed_port_url):
    term = terminals("--endpoint", closed_port_url)
    screen = term.wait_for(toolbar_drawn)
    assert screen.count("cannot reach") == 2, screen  # one line above the prompt, and the toolbar
    term.type("still typing")
    term.wait_for(lambda s: ">>> still typing" in s, timeout=10)
    term.keys("C-c")  # clears the line
    term.wait_for(lambda s: term.prompt_line() == ">>>", timeout=10)
    term.say("hello")  # the request fails: one error line, and the prompt again
    term.wait_for(lambda s: s.count("cannot reach") >= 3, timeout=20)
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit(timeout=20) == 0
    no_trap(term.scrollback())


def test_switching_to_a_dead_endpoint_with_model_says_so_and_keeps_the_prompt(terminals, closed_port_url, tmp_path):
    write_config(tmp_path, f'[models.dead]\nbackend = "tgi"\nendpoint = "{closed_port_url}"\n')
    term = terminals("-t", "0", "--max-new-tokens", "8")
    term.wait_for(toolbar_drawn)
    term.say("/model dead")
    term.wait_for(lambda s: "cannot reach" in s and toolbar_drawn(s), timeout=20)
    term.type("abc")
    term.wait_for(lambda s: ">>> abc" in s, timeout=10)
    term.keys("C-c")
    term.say("/exit")
    assert term.wait_exit(timeout=20) == 0
    no_trap(term.scrollback())


# ---- 2: an endpoint that never answers ----------------------------------------------------


def test_an_endpoint_that_never_answers_leaves_typing_ctrl_c_and_ctrl_d_working(terminals, silent_url):
    term = terminals("--endpoint", silent_url)  # the default --timeout: 120 s
    term.wait_for(lambda s: ">>>" in s and toolbar_drawn(s), timeout=20)
    assert "context ?/? tokens" in term.bottom_line()  # not known yet, and the prompt did not wait for it
    term.type("typing echoes")
    term.wait_for(lambda s: ">>> typing echoes" in s, timeout=15)
    term.keys("C-c")
    term.wait_for(lambda s: term.prompt_line() == ">>>", timeout=15)
    term.say("hello")  # waits for the endpoint …
    time.sleep(1)  # (a key pressed as Enter is handled would go to the prompt, not be Ctrl-C)
    term.keys("C-c")  # … until Ctrl-C
    term.wait_for("nothing was kept", timeout=10)
    term.type("x")
    term.wait_for(lambda s: ">>> x" in s, timeout=15)
    term.keys("C-u", "C-d")
    assert term.wait_exit(timeout=10) == 0
    no_trap(term.scrollback())


# ---- 3: the terminal goes away -------------------------------------------------------------


def test_closing_the_terminal_at_the_prompt_ends_the_chat_and_keeps_the_session(terminals, tgi_endpoint):
    tgi_endpoint.stream([" Bonjour", " à", " tous"], "eos_token")
    term = terminals("chat", "--session", "kept", "--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("hello")
    term.wait_for("Bonjour à tous")
    term.wait_for(lambda s: term.prompt_line() == ">>>", timeout=10)  # the next prompt
    term.vanish()
    _gone_within(term, 10)
    saved = json.loads((sessions_dir(term.home) / "kept.json").read_text())
    assert [t["user"] for t in saved["turns"]] == ["hello"]


def test_closing_the_terminal_while_the_endpoint_hangs_ends_the_chat(terminals, silent_url):
    term = terminals("chat", "--session", "stuck", "--endpoint", silent_url)
    term.wait_for(lambda s: ">>>" in s and toolbar_drawn(s), timeout=20)
    term.say("hello")  # stuck waiting for an answer that never comes
    term.vanish()
    _gone_within(term, 10)
    # No exchange was made (a message without a reply is not kept): no empty session is left
    # behind for --resume to open (issue 23 item 7).
    assert not (sessions_dir(term.home) / "stuck.json").exists()


def test_closing_the_terminal_mid_reply_keeps_what_arrived(terminals, tgi_endpoint):
    tgi_endpoint.forever(0.05)
    term = terminals("chat", "--session", "streaming", "--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("talk forever")
    term.wait_for("word word word")
    term.vanish()
    _gone_within(term, 10)
    saved = json.loads((sessions_dir(term.home) / "streaming.json").read_text())
    assert saved["turns"][0]["assistant"].count("word") >= 3
    assert saved["turns"][0]["status"] == "cut"


def _gone_within(term, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while term.alive():
        assert time.monotonic() < deadline, f"the chat outlived its terminal by {seconds:g}s"
        time.sleep(0.1)


# ---- 4: a message with no reply is not kept -------------------------------------------------


def test_a_message_whose_request_failed_is_not_kept_or_sent_again(terminals, tgi_endpoint):
    tgi_endpoint.stream([" First", " reply"], "eos_token")
    tgi_endpoint.error(500, "the server stopped")
    tgi_endpoint.error_event([" Half"], "out of memory")
    tgi_endpoint.stream([" Fine"], "eos_token")
    term = terminals("--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("hello")
    term.wait_for("First reply")
    term.say("hello again")
    term.wait_for("was not kept")
    term.say("half please")
    term.wait_for("out of memory")
    term.say("last one")
    term.wait_for("Fine")
    term.say("/history")
    shown = term.wait_for("You: last one", whole=True)
    history = shown[shown.rindex("/history") :]
    assert "You: hello again" not in history  # no reply: not kept …
    assert "You: half please" in history and "(incomplete): Half" in history  # … a partial one is
    assert "hello again" not in tgi_endpoint.requests[-1].body["inputs"]  # and not sent again as context
    assert "half please" in tgi_endpoint.requests[-1].body["inputs"]
    term.keys("Up", "Up", "Up", "Up")  # the failed message is still in the input history
    term.wait_for(lambda s: term.prompt_line() == ">>> hello again", timeout=15)
    term.keys("C-u", "C-d")
    assert term.wait_exit() == 0
    no_trap(term.scrollback())


# ---- 5, 9: what the user sees is what the model wrote ----------------------------------------


def test_a_stop_sequence_split_across_the_continue_boundary_is_not_shown_or_kept(terminals, tgi_endpoint):
    tgi_endpoint.stream([" Line", " one", "\n"], "length")  # cut at the limit right after a line break
    tgi_endpoint.stream(["User", ":", " And the word kalimba.", "\nAssistant:", " Ah"], "length")
    term = terminals("--endpoint", tgi_endpoint.url, "--max-new-tokens", "3")
    term.wait_for(toolbar_drawn)
    term.say("hello")
    term.wait_for("/continue goes on")
    term.say("/continue")
    term.wait_for(lambda s: term.prompt_line() == ">>>" and s.count(">>>") >= 3, timeout=20)
    term.say("/history")
    shown = term.wait_for(lambda s: "You: hello" in s[s.rfind("/history") :], whole=True)
    assert "kalimba" not in shown and "User:" not in shown, shown
    assert tgi_endpoint.requests[1].body["inputs"].endswith("Assistant: Line one\n")  # it did go on from there
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0


def test_a_reply_starting_with_blank_lines_starts_at_its_text(terminals, tgi_endpoint):
    tgi_endpoint.stream(["\n", "\n", " Hello", " there"], "eos_token")
    term = terminals("--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("hi")
    screen = term.wait_for("Hello there")
    lines = screen.splitlines()
    assert lines[lines.index(">>> hi") + 1] == "Hello there", screen
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0


def test_ask_piped_to_head_prints_the_reply_first(tgi_endpoint, tmp_path):
    import subprocess

    from processes import FALCONCHAT, isolated_env

    tgi_endpoint.stream(["\n\n", "Hello", "\nsecond line"], "eos_token")
    command = " ".join([*FALCONCHAT, "ask", "--endpoint", tgi_endpoint.url, "hi"]) + " | head -1"
    done = subprocess.run(
        command, shell=True, cwd=tmp_path, env=isolated_env(tmp_path), capture_output=True, timeout=60
    )
    assert done.stdout.decode() == "Hello\n"


# ---- 12, 13: sessions and settings ----------------------------------------------------------


def test_a_reply_cut_by_max_new_tokens_can_be_continued_after_resume(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" One", " two", " three"], "length")
    tgi_endpoint.stream([" four"], "eos_token")  # for the second process's /continue
    first = terminals("chat", "--session", "long", "--endpoint", tgi_endpoint.url, "--max-new-tokens", "3")
    first.wait_for(toolbar_drawn)
    first.say("count")
    first.wait_for("/continue goes on")
    first.wait_prompt()
    first.keys("C-d")
    assert first.wait_exit() == 0
    saved = json.loads((sessions_dir(tmp_path) / "long.json").read_text())
    assert saved["turns"][0]["status"] == "length"

    again = terminals("chat", "--resume", "--endpoint", tgi_endpoint.url)
    again.wait_for(toolbar_drawn)
    again.say("/continue")
    again.wait_for("four")
    assert "is complete" not in again.scrollback()
    assert tgi_endpoint.requests[-1].body["inputs"].endswith("Assistant: One two three")
    again.wait_prompt()
    again.keys("C-d")
    assert again.wait_exit() == 0


def test_retry_with_a_fixed_seed_draws_a_new_reply_and_the_seed_can_be_cleared(terminals, tgi_endpoint):
    tgi_endpoint.stream([" A", " reply"], "eos_token")
    term = terminals("--endpoint", tgi_endpoint.url, "--seed", "5", "-t", "0.8")
    term.wait_for(toolbar_drawn)
    term.say("hello")
    term.wait_for("A reply")
    term.say("/retry")
    term.wait_for("seed is now 6")
    term.wait_for(lambda s: s.count("A reply") >= 2)
    term.say("/set seed none")
    term.wait_for("seed = none")
    term.say("/show")
    term.wait_for(lambda s: "seed = none" in s[s.rfind("/show") :])
    term.say("again")
    term.wait_for(lambda s: s.count("A reply") >= 3)
    seeds = [r.body["parameters"].get("seed") for r in tgi_endpoint.requests]
    assert seeds == [5, 6, None], seeds
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0


# ---- 10: an empty reply is never silent -------------------------------------------------------


def test_an_empty_reply_says_so_in_the_repl_and_in_ask(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.stream(["\n", "\n"], "eos_token")
    term = terminals("--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("Explain in three sentences why the sky is blue.")
    term.wait_for("ended without writing any text")
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0

    import subprocess

    from processes import FALCONCHAT, isolated_env

    done = subprocess.run(
        [*FALCONCHAT, "ask", "--endpoint", tgi_endpoint.url, "why?"],
        cwd=tmp_path,
        env=isolated_env(tmp_path),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == b""
    assert done.stderr.decode().count("ended without writing any text") == 1


def test_the_banner_show_and_model_say_which_format_is_in_use(terminals, tgi_endpoint, tmp_path):
    """The bundled model answers in its own chat template by default, and the chat says so,
    resolved (never "auto"); a TGI endpoint keeps the Falcon-style prompt."""
    write_config(tmp_path, f'[models.classic]\nbackend = "tgi"\nendpoint = "{tgi_endpoint.url}"\n')
    term = terminals()  # nothing configured: the bundled model
    term.wait_for(toolbar_drawn)
    assert "· format native (the model's chat template) ·" in term.scrollback(joined=True)
    term.say("/show")
    term.wait_for("format: native (the model's chat template)")
    term.wait_prompt()
    term.say("/model classic")
    term.wait_for(lambda s: "(format falcon); the conversation goes with it" in term.scrollback(joined=True))
    term.wait_prompt()
    term.say("/show")
    term.wait_for("format: falcon")
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0
    screen = term.scrollback(joined=True)
    assert "auto" not in screen, screen
    no_trap(screen)


# ---- 11: session names are checked at start -----------------------------------------------------


def test_a_session_name_that_can_never_be_saved_is_refused_at_start(terminals, tgi_endpoint):
    # A path ending in .json (a bare "notes/today" is refused as a name: test_session_rules.py)
    term = terminals("chat", "--session", "notes/today.json", "--endpoint", tgi_endpoint.url)
    assert term.wait_exit() == 2
    screen = term.scrollback(joined=True)
    assert "falconchat: error: cannot keep a session at notes/today.json: notes is not a directory" in screen, screen
    no_trap(screen)


def test_save_to_a_missing_directory_names_the_path_not_a_temporary_file(terminals, tgi_endpoint):
    tgi_endpoint.stream([" Hi"], "eos_token")
    term = terminals("--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("hello")
    term.wait_for("Hi")
    term.wait_prompt()
    term.say("/save ../../nowhere/evil.json")
    shown = term.wait_for("cannot keep a session at ../../nowhere/evil.json")
    assert ".tmp" not in shown
    term.wait_prompt()
    term.say("/save")  # no name, no session: the usage matches /help's "/save [NAME]"
    term.wait_for("usage: /save [NAME]")
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0


# ---- 17: the small things ------------------------------------------------------------------------


def test_the_small_things(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Noted"], "eos_token")
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf "written in the editor" > "$1"\n')
    editor.chmod(0o755)
    term = terminals("--no-history", "--endpoint", tgi_endpoint.url, env={"EDITOR": str(editor), "VISUAL": ""})
    term.wait_for(toolbar_drawn)
    for command, expected in (
        ("/role nosuch", "unknown role 'nosuch'"),
        ("/stats maybe", "usage: /stats on|off"),
        ("/temp abc", "(from /temp)"),
        ("/show", "seed = none"),
        ("/edit", "You: written in the editor"),
    ):
        term.say(command)
        term.wait_for(lambda s, e=expected, c=command: e in s[s.rfind(c) :], timeout=20)
        term.wait_prompt()
    term.wait_for("Noted")
    term.say("and again")  # two exchanges, unsaved: the hint on leaving
    term.wait_for(lambda s: s.count("Noted") == 2)
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0
    shown = term.scrollback(joined=True)
    hint = [line for line in shown.splitlines() if "was not saved" in line]
    assert hint and "`" not in hint[0], shown
    banner = next(line for line in shown.splitlines() if line.startswith("falconchat "))
    assert f"tgi endpoint {tgi_endpoint.url}" in banner and ", tgi)" not in banner, banner  # not "(http://…, tgi)"
    assert not (tmp_path / "data" / "falconchat" / "history").exists()  # --no-history before the command works


def test_resume_with_a_session_name_resumes_that_session(terminals, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Fine"], "eos_token")
    for name in ("work1", "work2"):  # work2 is the newest
        term = terminals("chat", "--session", name, "--endpoint", tgi_endpoint.url)
        term.wait_for(toolbar_drawn)
        term.say(f"in {name}")
        term.wait_for("Fine")
        term.wait_prompt()
        term.keys("C-d")
        assert term.wait_exit() == 0
    term = terminals("chat", "--resume", "--session", "work1", "--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("/history")
    shown = term.wait_for(lambda s: "You: in" in s)
    assert "You: in work1" in shown and "in work2" not in shown
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0


# ---- 6, 7, 8: what is on screen is what the model wrote, whatever the window does --------------


@pytest.mark.parametrize(
    "env",
    [{}, {"COLUMNS": "80", "LINES": "24"}],
    ids=["window-size", "stale-COLUMNS"],  # a shell that exported COLUMNS when the window was wider
)
def test_a_poems_single_line_breaks_stay_line_breaks_and_each_is_shown_once(terminals, tgi_endpoint, env):
    """Items 7 and 8: with COLUMNS=80 in a 60-column window (as the test runner's readline
    exports it) the live view's lines, padded to 80, took two rows and the first stayed twice."""
    tgi_endpoint.stream(
        [" In the realm of the frozen lands,", "\nThe snow's a harsh beauty,", "\nCold and white."], "eos_token"
    )
    term = terminals("--endpoint", tgi_endpoint.url, width=60, height=20, env=env)
    term.wait_for(toolbar_drawn)
    term.say("a poem please")
    term.wait_for("Cold and white.")
    term.wait_prompt()  # the reply drawn in full
    lines = [line.rstrip() for line in term.screen().splitlines()]
    start = lines.index(">>> a poem please")
    assert lines[start + 1 : start + 4] == [
        "In the realm of the frozen lands,",
        "The snow's a harsh beauty,",
        "Cold and white.",
    ], lines
    term.keys("C-d")
    assert term.wait_exit() == 0


CODE_LINE = 'print(f"created {path}")  # a comment that runs well past the forty columns'


def test_a_code_line_wider_than_the_window_is_written_whole_for_the_terminal_to_wrap(terminals, tgi_endpoint):
    """Item 6: the line was broken with real line breaks (a copy gave two lines), and prose
    was padded with spaces to the width."""
    tgi_endpoint.stream(
        ["Here is the script, run it with python when you are ready:\n\n", "```python\n", CODE_LINE, "\n```\n"],
        "eos_token",
    )
    term = terminals("--endpoint", tgi_endpoint.url, width=40, height=20)
    term.wait_for(lambda s: "context" in term.bottom_line())  # the toolbar, cut at 40 columns
    term.say("code please")
    term.wait_for("ready:")
    term.wait_prompt()
    joined = term.scrollback(joined=True).splitlines()  # -J: rows the terminal wrapped, joined back
    assert CODE_LINE in joined, joined
    start = joined.index(">>> code please")
    reply = joined[start + 1 : joined.index(CODE_LINE) + 1]
    assert reply and not [line for line in reply if line.endswith(" ")], reply  # -J keeps trailing spaces
    term.keys("C-d")
    assert term.wait_exit() == 0


def test_narrowing_the_window_mid_reply_leaves_each_line_once(terminals, tgi_endpoint):
    """Item 8: the live view's lines, drawn at 100 columns, take more rows once the terminal
    re-wraps them at 40; erasing one row per line left the rest behind, twice in the scrollback."""
    import threading

    words = [f"w{i:03d}" for i in range(1, 121)]
    resized = threading.Event()

    def reply_around_a_resize(reply) -> None:
        reply.start_stream()
        for i, word in enumerate(words):
            if i == 59:  # the view draws at a token, at most every 50 ms: w060, later, is drawn before the wait
                time.sleep(0.1)
            if i == 60:
                resized.wait(30)
            last = i == len(words) - 1
            details = {"finish_reason": "eos_token", "generated_tokens": len(words), "seed": None}
            text = " " + word
            reply.token(text, generated_text=" ".join(words) if last else None, details=details if last else None)
            time.sleep(0.01)
        reply.end_stream()

    tgi_endpoint.stream([f"line {i:02d}\n" for i in range(40)], "eos_token")  # a full screen: the chat so far
    tgi_endpoint.script(reply_around_a_resize)
    term = terminals("--endpoint", tgi_endpoint.url, width=100, height=30)
    term.wait_for(toolbar_drawn)
    term.say("fill the screen")
    term.wait_for("line 39")
    term.wait_prompt()
    term.say("many words")
    term.wait_for("w060")  # the live view holds the paragraph so far: lines of about 100 columns
    term.resize(40, 30)
    term.wait_for(lambda s: max(len(line) for line in s.splitlines()) <= 40)  # re-wrapped
    resized.set()
    term.wait_for("w120")
    term.wait_prompt()
    shown = term.scrollback(joined=True)
    reply = shown[shown.index(">>> many words") :]
    for word in words:
        assert reply.count(word) == 1, (word, reply)
    term.keys("C-d")
    assert term.wait_exit() == 0


def test_text_typed_while_a_reply_streams_is_not_echoed_into_it(terminals, tgi_endpoint):
    """Item 17. Seen with --plain (streamed as it comes); the Markdown view redraws over an echo."""
    tgi_endpoint.forever(0.05)
    term = terminals("--plain", "--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("talk forever")
    term.wait_for("word word word")
    term.type("typedwhilestreaming")
    term.wait_for(lambda s: s.count("word") >= 40)  # the reply went on after the keys
    term.keys("C-c")
    term.wait_prompt()
    term.keys("C-d")
    assert term.wait_exit() == 0
    assert "typedwhilestreaming" not in term.scrollback(joined=True)


def test_export_labels_each_reply_with_the_model_that_wrote_it(terminals, tgi_endpoint, tmp_path):
    """Item 17: after /model, /export labelled every reply with the current model."""
    tgi_endpoint.stream([" Noted"], "eos_token")
    url = tgi_endpoint.url
    write_config(
        tmp_path,
        f'[models.first]\nbackend = "tgi"\nendpoint = "{url}"\n[models.second]\nbackend = "tgi"\nendpoint = "{url}"\n',
    )
    term = terminals("-m", "first")
    term.wait_for(toolbar_drawn)
    term.say("one")
    term.wait_for("Noted")
    term.wait_prompt()
    term.say("/model second")
    term.wait_for("now talking to")
    term.wait_prompt()
    term.say("two")
    term.wait_for(lambda s: s.count("Noted") == 2)
    term.wait_prompt()
    out = tmp_path / "talk.md"
    term.say(f"/export {out}")
    term.wait_for(lambda s: out.exists(), timeout=20)
    term.keys("C-d")
    term.wait_exit()
    labels = [line for line in out.read_text().splitlines() if line.startswith("## ") and line != "## You"]
    assert labels == ["## first", "## second"], out.read_text()


def test_keys_typed_while_a_reply_streams_wait_at_the_next_prompt(terminals, tgi_endpoint):
    """Item 17, typeahead: unseen while the reply streams, then the start of the next message."""
    words = [" word"] * 60

    def slow_reply(reply) -> None:
        reply.start_stream()
        for i, text in enumerate(words):
            last = i == len(words) - 1
            details = {"finish_reason": "length", "generated_tokens": len(words), "seed": None}
            reply.token(text, generated_text="".join(words) if last else None, details=details if last else None)
            time.sleep(0.05)
        reply.end_stream()

    tgi_endpoint.script(slow_reply)
    term = terminals("--plain", "--endpoint", tgi_endpoint.url)
    term.wait_for(toolbar_drawn)
    term.say("talk a while")
    term.wait_for("word word word")
    term.type("typedahead")
    term.wait_for(lambda s: term.prompt_line() == ">>> typedahead", timeout=20)
    assert term.scrollback(joined=True).count("typedahead") == 1  # at the prompt, not in the reply
    term.keys("C-u", "C-d")
    assert term.wait_exit() == 0


def test_keys_typed_while_the_endpoint_is_probed_wait_for_the_prompt(terminals, silent_url):
    """Item 17: the chat gives an endpoint that never answers 5 s to say its API; keys typed
    meanwhile are not echoed above the banner, they are the prompt's first text."""
    term = terminals("--endpoint", silent_url)
    time.sleep(2)  # the process has started and is waiting for the endpoint
    assert ">>>" not in term.screen()
    term.type("early")
    term.wait_for(lambda s: term.prompt_line() == ">>> early", timeout=20)
    assert term.scrollback(joined=True).count("early") == 1, term.scrollback()
    term.keys("C-u", "C-d")
    assert term.wait_exit(timeout=10) == 0

"""Issue 23 items 7, 16, 17 and 21 (/export): where sessions go, what is never replaced
silently, and what a reopened session says — driven as the report's user did, in a real
terminal (pexpect) and through a real pipe, on a scripted TGI endpoint (fast) or the bundled model."""

from __future__ import annotations

import json

import pytest
from repl_helpers import sessions_dir

from processes import falconchat, isolated_env, one_error_line

pytestmark = pytest.mark.process  # the real falconchat, in a terminal or with its input a pipe


def turns(home, name: str) -> list[str]:
    return [t["user"] for t in json.loads((sessions_dir(home) / f"{name}.json").read_text())["turns"]]


# ---- 7: a session is a bare name, or a path ending in .json -------------------------------


@pytest.mark.parametrize("name", ["a/b", "../x", "work/notes"])
def test_a_session_name_with_a_slash_is_refused_in_one_line(tgi_endpoint, tmp_path, name):
    """`--session ../x` wrote a file named x (no .json) one folder up; `a/b` talked about directories."""
    home = tmp_path / "home"
    home.mkdir()
    tgi_endpoint.stream([" Noted."], "eos_token")
    done = falconchat(
        "--session", name, "--endpoint", tgi_endpoint.url, cwd=home, env=isolated_env(home), input=b"hello\n"
    )
    assert done.returncode == 2, done.stderr.decode()
    line = one_error_line(done.stderr)
    assert f"bad session name {name!r}" in line and "a path ending in .json" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # nothing written beside it
    assert not (home / "a").exists() and not sessions_dir(home).exists()


def test_save_and_load_with_a_slash_are_refused_and_a_json_path_works(tgi_endpoint, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tgi_endpoint.stream([" Noted."], "eos_token")
    done = falconchat(
        "chat", "--endpoint", tgi_endpoint.url, cwd=home, env=isolated_env(home),
        input=b"hello\n/save ../escape\n/load ../fruits\n/save kept.json\n",
    )  # fmt: skip
    said = done.stderr.decode()
    assert done.returncode == 0, said
    assert "bad session name '../escape'" in said and "bad session name '../fruits'" in said
    assert not (tmp_path / "escape").exists()
    assert json.loads((home / "kept.json").read_text())["turns"][0]["user"] == "hello"


def test_a_named_session_left_with_no_exchange_writes_no_file(chats, tgi_endpoint, tmp_path):
    """It wrote an empty session, which then became --resume's target."""
    chat = chats("--session", "empty", "--endpoint", tgi_endpoint.url)
    chat.child.send("/exit\r")
    assert chat.wait_exit()[0] == 0
    done = falconchat("--session", "piped", cwd=tmp_path, env=isolated_env(tmp_path), input=b"/exit\n")
    assert done.returncode == 0, done.stderr.decode()
    assert not sessions_dir(tmp_path).exists() or list(sessions_dir(tmp_path).iterdir()) == []


# ---- 16 and 21: /save and /export never replace another file silently ---------------------


def test_save_does_not_replace_another_conversation_until_repeated(chats, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Noted."], "eos_token")
    first = chats("--endpoint", tgi_endpoint.url)
    first.say("apples and pears")
    assert "saved to" in first.say("/save fruits")
    first.say("and plums")
    assert "saved to" in first.say("/save fruits")  # its own session: kept current without a question
    first.ctrl_d()

    second = chats("--endpoint", tgi_endpoint.url)
    second.say("the weather today")
    shown = second.say("/save fruits")
    assert "session fruits exists" in shown and "/save fruits again replaces it" in shown
    assert turns(tmp_path, "fruits") == ["apples and pears", "and plums"]  # untouched
    second.say("/show")  # anything else in between: the next /save asks again
    assert "exists" in second.say("/save fruits")
    assert turns(tmp_path, "fruits") == ["apples and pears", "and plums"]
    assert "saved to" in second.say("/save fruits")  # repeated at once: replaced
    assert turns(tmp_path, "fruits") == ["the weather today"]


def test_save_and_export_of_an_empty_conversation_write_nothing(chats, tmp_path):
    chat = chats()
    assert "nothing to save yet" in chat.say("/save early")
    assert "nothing to export yet" in chat.say("/export early.md")
    assert not (tmp_path / "early.md").exists() and not sessions_dir(tmp_path).exists()


def test_export_does_not_overwrite_a_file_until_repeated(chats, tgi_endpoint, tmp_path):
    (tmp_path / "notes.md").write_text("my own notes\n")
    tgi_endpoint.stream([" Noted."], "eos_token")
    chat = chats("--endpoint", tgi_endpoint.url)
    chat.say("hello")
    shown = chat.say("/export notes.md")
    assert "exists" in shown and "/export notes.md again replaces it" in shown
    assert (tmp_path / "notes.md").read_text() == "my own notes\n"
    assert "exported to" in chat.say("/export notes.md")
    assert "## You\n\nhello\n" in (tmp_path / "notes.md").read_text()
    chat.say("and again")
    assert "exported to" in chat.say("/export notes.md")  # its own file now: kept current


# ---- 17: --resume says which model and where the conversation left off --------------------


def test_resume_says_the_model_it_was_recorded_with_and_the_last_exchange(chats, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Noted", " well."], "eos_token")
    first = chats("--session", "hupper", "--endpoint", tgi_endpoint.url)
    first.say("remember the blue door")
    recorded = json.loads((sessions_dir(tmp_path) / "hupper.json").read_text())["model"]
    first.ctrl_d()

    resumed = chats("--resume")  # the bundled model now
    banner = " ".join(resumed.banner.split())
    assert f"resumed hupper: 1 exchange (recorded with {recorded}; now talking to smollm2)" in banner
    assert "You: remember the blue door" in banner and "Noted well." in banner
    resumed.ctrl_d()

    same = chats("--session", "hupper", "--endpoint", tgi_endpoint.url)
    banner = " ".join(same.banner.split())
    assert f"resumed hupper: 1 exchange (recorded with {recorded})" in banner
    assert "now talking to" not in banner

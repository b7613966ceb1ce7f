"""A Hub model on a terminal (tmux): the chat offers to pull it (`[Y/n]`) and shows the progress
bar; Ctrl-C during `models pull` keeps what was downloaded for the next pull and no model file."""

import re

import pytest

from falconchat.backends.gguf import bundled_model_path
from hub_endpoint import COMMIT, Repo, Script, ScriptedHub
from tmux_terminal import TmuxTerminal, have_tmux

pytestmark = [pytest.mark.process, pytest.mark.skipif(not have_tmux(), reason="tmux is not installed")]

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def serve(script: Script) -> ScriptedHub:
    gguf = bundled_model_path().read_bytes()
    return ScriptedHub({REPO: Repo(files={FILE: gguf}, lfs={FILE})}, script)


def cached(home):
    repo = home / "hf" / "hub" / ("models--" + REPO.replace("/", "--"))
    return repo / "snapshots" / COMMIT / FILE, repo / "blobs"


def test_the_chat_offers_a_model_not_pulled_then_chats_with_it(tmp_path):
    with serve(Script(chunk_delay_s=0.001)) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        term = TmuxTerminal(tmp_path, "-m", f"hf:{REPO}", env=env)
        try:
            term.wait_for(f"Download {REPO}/{FILE}, 98 MB? [Y/n]")
            term.keys("Enter")
            screen = term.wait_prompt()
            assert re.search(r"98\.\d/98\.\d MB", screen), screen  # the bar, finished
            assert f"{FILE} (Q4_1, no Q4_K_M: the closest to 4 bits)" in screen
            term.say("Say hi.")
            term.wait_for(lambda s: s.count(">>>") >= 2)
            term.keys("C-d")
            assert term.wait_exit() == 0
        finally:
            term.close()
        assert cached(tmp_path)[0].is_file()


def test_no_to_the_offer_names_the_pull_command(tmp_path):
    with serve(Script()) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        term = TmuxTerminal(tmp_path, "-m", f"hf:{REPO}", env=env)
        try:
            term.wait_for("[Y/n]")
            term.say("n")
            assert term.wait_exit() == 2
            assert f"falconchat models pull hf:{REPO}" in term.scrollback(joined=True)
        finally:
            term.close()
        assert not cached(tmp_path)[0].parent.parent.exists()


def test_ctrl_c_during_a_pull_keeps_the_part_and_the_next_pull_resumes(tmp_path):
    with serve(Script(chunk_delay_s=0.01)) as hub:  # about 15 s: time to see the bar move and stop it
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        term = TmuxTerminal(tmp_path, "models", "pull", f"hf:{REPO}", env=env)
        try:
            term.wait_for(lambda s: re.search(r"[1-9]\d*\.\d/98\.\d MB", s) is not None)  # bytes have arrived
            term.keys("C-c")
            assert term.wait_exit() == 130
            assert "the same command resumes it" in term.scrollback(joined=True)
        finally:
            term.close()
        model, blobs = cached(tmp_path)
        assert not model.exists()
        (partial,) = blobs.glob("*.incomplete")
        kept = partial.stat().st_size
        assert kept > 0
        hub.script.chunk_delay_s = 0
        hub.requests.clear()
        term = TmuxTerminal(tmp_path, "models", "pull", f"hf:{REPO}", env=env)
        try:
            assert term.wait_exit(timeout=60) == 0
        finally:
            term.close()
        assert model.is_file()
        assert [h.get("Range") for _, path, h in hub.requests if path.startswith("/cdn/")] == [f"bytes={kept}-"]


def test_slash_model_switches_to_a_pulled_hub_model_and_back(tmp_path):
    from processes import falconchat, isolated_env

    with serve(Script()) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        pulled = falconchat("models", "pull", f"hf:{REPO}", cwd=tmp_path, env=isolated_env(tmp_path, **env))
        assert pulled.returncode == 0, pulled.stderr.decode()
        hub.requests.clear()
        term = TmuxTerminal(tmp_path, env=env)
        try:
            term.wait_prompt()
            term.say("/model hf:test-org/not-pulled-GGUF")
            term.wait_for("is not downloaded: run `falconchat models pull")  # the line wraps at 100 columns
            term.say(f"/model hf:{REPO}:q4_1")
            term.wait_for(f"now talking to hf:{REPO}:q4_1")
            term.say("Say hi.")
            term.wait_for(lambda s: s.count(">>>") >= 4)  # the reply is done: a fresh prompt
            term.say("/model smollm2")
            term.wait_for("now talking to smollm2")
            term.keys("C-d")
            assert term.wait_exit() == 0
        finally:
            term.close()
        assert hub.requests == []  # switching to a pulled model asks the Hub nothing

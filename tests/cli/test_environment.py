"""One `Environment`, handed down: what a command reads of the world (variables, streams,
tracebacks) comes from the Environment it runs in, never from this process's own variables,
so a test sets them in process."""

from __future__ import annotations

import io
import json
import stat

from falconchat.cli.app import run
from falconchat.errors import ExitCode
from in_process import Terminal, environment


def editor_script(path, text: str):
    """An editor that writes `text` into the file it is given, and says it ran."""
    path.write_text(f'#!/bin/sh\nprintf "%s" "{text}" > "$1"\necho ran >> "{path}.ran"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_edit_runs_the_environments_editor(tmp_path, tgi_endpoint, monkeypatch):
    tgi_endpoint.stream([" Sure"], "eos_token")
    ours = editor_script(tmp_path / "ours.sh", "written in the chosen editor")
    theirs = editor_script(tmp_path / "theirs.sh", "written in the process's editor")
    monkeypatch.setenv("VISUAL", str(theirs))  # the process's own: not what the command sees
    monkeypatch.setenv("EDITOR", str(theirs))
    env = environment(tmp_path, b"/edit a draft\n", EDITOR=str(ours), FALCONCHAT_ENDPOINT=tgi_endpoint.url)
    assert run(["chat", "--no-history"], env) == ExitCode.OK, env.stderr.text()
    assert (tmp_path / "ours.sh.ran").exists() and not (tmp_path / "theirs.sh.ran").exists()
    assert tgi_endpoint.requests[0].body["inputs"].endswith("User: written in the chosen editor\nAssistant:")
    assert env.stdout.text() == "Sure\n"


def test_visual_beats_editor_on_the_environment(tmp_path, tgi_endpoint):
    tgi_endpoint.stream([" Sure"], "eos_token")
    visual = editor_script(tmp_path / "visual.sh", "from VISUAL")
    editor = editor_script(tmp_path / "editor.sh", "from EDITOR")
    env = environment(
        tmp_path, b"/edit\n", VISUAL=str(visual), EDITOR=str(editor), FALCONCHAT_ENDPOINT=tgi_endpoint.url
    )
    assert run(["chat", "--no-history"], env) == ExitCode.OK, env.stderr.text()
    assert tgi_endpoint.requests[0].body["inputs"].endswith("User: from VISUAL\nAssistant:")


class FullDisk(Terminal):
    """A stdout whose writes fail as on a full disk: an error no command expects."""

    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def unexpected(tmp_path, tgi_endpoint, **variables: str):
    tgi_endpoint.stream([" Hello"], "eos_token")
    env = environment(tmp_path, FALCONCHAT_ENDPOINT=tgi_endpoint.url, **variables)
    env.stdout = FullDisk()
    code = run(["ask", "hi"], env)
    return code, env.stderr.text()


def test_an_unexpected_error_is_one_line_without_debug(tmp_path, tgi_endpoint):
    code, err = unexpected(tmp_path, tgi_endpoint)
    assert code == 1
    assert err.splitlines() == [
        "falconchat: error: unexpected OSError: [Errno 28] No space left on device (run with --debug for details)"
    ]


def test_debug_in_a_dotenv_file_shows_the_traceback(tmp_path, tgi_endpoint):
    (tmp_path / ".env").write_text("FALCONCHAT_DEBUG=1\n")
    code, err = unexpected(tmp_path, tgi_endpoint)
    assert code == 1
    assert err.startswith("Traceback (most recent call last):"), err  # on the command's stderr
    assert err.splitlines()[-1].startswith("falconchat: error: unexpected OSError: [Errno 28]")


def test_debug_in_the_environments_variables_shows_the_traceback(tmp_path, tgi_endpoint):
    code, err = unexpected(tmp_path, tgi_endpoint, FALCONCHAT_DEBUG="1")
    assert code == 1 and "Traceback (most recent call last):" in err, err


def test_the_environments_stdin_is_what_ask_reads(tmp_path, tgi_endpoint, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("the process's input"))
    tgi_endpoint.stream([" ok"], "eos_token")
    env = environment(tmp_path, b"the command's input", FALCONCHAT_ENDPOINT=tgi_endpoint.url)
    assert run(["ask", "Summarise:"], env) == ExitCode.OK
    assert "User: Summarise:\n\nthe command's input\nAssistant:" in tgi_endpoint.requests[0].body["inputs"]


def endpoint_config(path, url: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'model = "far"\n\n[models.far]\nbackend = "tgi"\nendpoint = "{url}"\n')
    return path


def test_the_user_config_dir_is_the_environments(tmp_path, tgi_endpoint, monkeypatch):
    tgi_endpoint.stream([" ok"], "eos_token")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "process"))  # not the command's
    env = environment(tmp_path)  # XDG_CONFIG_HOME=tmp_path/config
    endpoint_config(tmp_path / "config" / "falconchat" / "config.toml", tgi_endpoint.url)
    assert run(["ask", "hi"], env) == ExitCode.OK, env.stderr.text()
    assert env.stdout.text() == "ok\n" and len(tgi_endpoint.requests) == 1


def test_relative_config_and_env_file_paths_are_from_the_environments_directory(tmp_path, tgi_endpoint):
    tgi_endpoint.stream([" ok"], "eos_token")
    endpoint_config(tmp_path / "conf" / "mine.toml", tgi_endpoint.url)
    (tmp_path / "conf" / "mine.env").write_text("FALCONCHAT_MAX_NEW_TOKENS=7\n")
    env = environment(tmp_path)  # its directory is tmp_path; this process's is elsewhere
    assert run(["ask", "--config", "conf/mine.toml", "--env-file", "conf/mine.env", "hi"], env) == ExitCode.OK, (
        env.stderr.text()
    )
    assert tgi_endpoint.requests[0].body["parameters"]["max_new_tokens"] == 7


def test_bench_progress_is_redrawn_only_where_the_environment_says_a_terminal_draws(tmp_path):
    from falconchat.cli.bench import Progress

    for term, live in (("xterm-256color", True), ("dumb", False)):
        env = environment(tmp_path, TERM=term)
        env.stderr = Terminal(tty=True)
        progress = Progress(env)
        progress.step("one")
        progress.end(keep=False)
        assert ("\x1b[" in env.stderr.text()) is live, (term, env.stderr.text())


def test_debug_in_the_config_file_shows_the_traceback(tmp_path, tgi_endpoint):
    config = tmp_path / "config" / "falconchat" / "config.toml"  # the Environment's XDG_CONFIG_HOME
    config.parent.mkdir(parents=True)
    config.write_text("debug = true\n")
    code, err = unexpected(tmp_path, tgi_endpoint)
    assert code == 1 and err.startswith("Traceback (most recent call last):"), err


def test_batch_reads_and_writes_relative_paths_from_the_environments_directory(tmp_path, tgi_endpoint):
    tgi_endpoint.echo()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "prompts.txt").write_text("first\nsecond\n")
    env = environment(tmp_path, FALCONCHAT_ENDPOINT=tgi_endpoint.url)  # its directory, not this process's
    assert run(["batch", "in/prompts.txt", "-o", "out.jsonl"], env) == ExitCode.OK, env.stderr.text()
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["reply"] for r in records) == ["echo: first", "echo: second"]

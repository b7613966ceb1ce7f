"""Issue 9, shell completion: Typer's --install-completion and --show-completion stay on
and work for bash, zsh and fish; the completion protocol answers with our commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from processes import FALCONCHAT, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

NO_DETECTION = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}  # take the shell as an argument


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FALCONCHAT, *args], env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
    )


def test_help_offers_completion(tmp_path):
    result = run("--help", env=isolated_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert "--install-completion" in result.stdout
    assert "--show-completion" in result.stdout


@pytest.mark.parametrize(
    "shell, marker",
    [
        ("bash", "complete -o default -F _falconchat_completion falconchat"),
        ("zsh", "#compdef falconchat"),
        ("fish", "complete --command falconchat"),
    ],
)
def test_show_completion_prints_a_script_for_each_shell(tmp_path, shell, marker):
    result = run("--show-completion", shell, env=isolated_env(tmp_path, **NO_DETECTION), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout
    assert "_FALCONCHAT_COMPLETE" in result.stdout


@pytest.mark.parametrize(
    "shell, installed",
    [
        ("bash", ".bash_completions/falconchat.sh"),
        ("zsh", ".zfunc/_falconchat"),
        ("fish", ".config/fish/completions/falconchat.fish"),
    ],
)
def test_install_completion_writes_the_script_for_each_shell(tmp_path, shell, installed):
    home = tmp_path / "home"
    home.mkdir()
    result = run(
        "--install-completion", shell, env=isolated_env(tmp_path, HOME=str(home), **NO_DETECTION), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"{shell} completion installed" in result.stdout
    script = home / installed
    assert "_FALCONCHAT_COMPLETE" in script.read_text()


def test_the_completion_protocol_completes_commands_and_options(tmp_path):
    env = isolated_env(tmp_path, _FALCONCHAT_COMPLETE="complete_bash", COMP_WORDS="falconchat ch", COMP_CWORD="1")
    assert run(env=env, cwd=tmp_path).stdout.split() == ["chat"]
    env.update(COMP_WORDS="falconchat chat --ses", COMP_CWORD="2")
    assert run(env=env, cwd=tmp_path).stdout.split() == ["--session"]
    env = isolated_env(tmp_path, _FALCONCHAT_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="falconchat chat --no-hi")
    assert "--no-history" in run(env=env, cwd=tmp_path).stdout
    env = isolated_env(
        tmp_path,
        _FALCONCHAT_COMPLETE="complete_fish",
        _TYPER_COMPLETE_ARGS="falconchat chat --res",
        _TYPER_COMPLETE_FISH_ACTION="get-args",
    )
    assert "--resume" in run(env=env, cwd=tmp_path).stdout


def test_bash_runs_the_installed_completion(tmp_path):
    bash = shutil.which("bash")
    entry = Path(sys.executable).parent / "falconchat"
    if bash is None or not entry.exists():
        pytest.skip("needs bash and the installed falconchat entry point")
    script = run("--show-completion", "bash", env=isolated_env(tmp_path, **NO_DETECTION), cwd=tmp_path).stdout
    (tmp_path / "completion.sh").write_text(script)
    env = isolated_env(tmp_path, PATH=f"{entry.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(
        [
            bash,
            "--norc",
            "-c",
            "source completion.sh; COMP_WORDS=(falconchat as); COMP_CWORD=1; "
            '_falconchat_completion falconchat; printf "%s\\n" "${COMPREPLY[@]}"',
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["ask"], result.stderr

"""`falconchat ask` as a real process against a scripted TGI endpoint (tests/tgi_endpoint.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

SRC = Path(__file__).resolve().parents[2] / "src"
KEY = "secret-key"
# The real CLI with the retry backoff shortened, so "overloaded after retries" takes no seconds.
QUICK_RETRIES = (
    "import falconchat.backends.tgi as tgi; tgi.BACKOFF_S = 0.001; from falconchat.cli.app import main; main()"
)


def falconchat(args: list[str], tmp_path: Path, env: dict[str, str] | None = None, *, quick_retries: bool = False):
    """Run falconchat with a clean environment (only `env` added), in tmp_path/work."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FALCONCHAT_", "HF_API_"))}
    clean.pop("NO_COLOR", None)  # plain output must come from stdout being a pipe, not from NO_COLOR
    clean.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # no user .env or config.toml
        XDG_DATA_HOME=str(tmp_path / "data"),
        TERM="xterm-256color",
        **(env or {}),
    )
    entry = ["-c", QUICK_RETRIES] if quick_retries else ["-m", "falconchat"]
    return subprocess.run(
        [sys.executable, *entry, *args],
        cwd=work,
        env=clean,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ask_prints_the_reply_and_exits_0(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Hello", " there", ".", "\nUser:", " more"])
    result = falconchat(["ask", "--endpoint", tgi_endpoint.url, "hi"], tmp_path, {"HF_API_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello there.\n"
    assert "\x1b" not in result.stdout
    assert result.stderr == ""
    [request] = tgi_endpoint.requests
    assert request.body["inputs"] == "User: hi\nAssistant:"
    assert request.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "fault, exit_code, says",
    [
        (lambda ep: ep.error(401, "Authorization header is correct, but the token seems invalid"), 4, "HF_API_KEY"),
        (
            lambda ep: ep.error(422, "Input validation error: `max_new_tokens` must be <= 1024", "validation"),
            5,
            "`max_new_tokens` must be <= 1024",
        ),
        (lambda ep: ep.error(429, "Model is overloaded", "overloaded"), 6, "overloaded"),
        (lambda ep: ep.page(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"), 3, "not a TGI answer"),
        (None, 3, "connection refused"),  # nothing listens
    ],
    ids=["401", "422", "429", "502 html", "refused"],
)
def test_ask_reports_a_fault_in_one_line_with_its_exit_code(
    tgi_endpoint, closed_port_url, tmp_path, fault, exit_code, says
):
    url = closed_port_url if fault is None else tgi_endpoint.url
    if fault is not None:
        fault(tgi_endpoint)
    result = falconchat(["ask", "--endpoint", url, "hi"], tmp_path, {"HF_API_KEY": KEY}, quick_retries=True)
    assert result.returncode == exit_code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("falconchat: error:")
    assert says in lines[0]
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr
    assert "<html" not in result.stderr and "<h1>" not in result.stderr


def test_a_cut_reply_keeps_what_arrived_on_stdout(tgi_endpoint, tmp_path):
    tgi_endpoint.cut([" Half", " a"])
    result = falconchat(["ask", "--endpoint", tgi_endpoint.url, "hi"], tmp_path)
    assert result.returncode == 1
    assert result.stdout == "Half a\n"
    assert result.stderr.startswith("falconchat: error:") and len(result.stderr.splitlines()) == 1


def test_the_classic_tutorial_variables_route_to_the_endpoint(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" From", " env"])
    result = falconchat(["ask", "hi"], tmp_path, {"HF_API_FALCOM_BASE": tgi_endpoint.url, "HF_API_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "From env\n"
    assert tgi_endpoint.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_dotenv_file_in_the_current_directory_is_read(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" From", " dotenv"])
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / ".env").write_text(f"HF_API_KEY={KEY}\nHF_API_FALCOM_BASE={tgi_endpoint.url}\n")
    result = falconchat(["ask", "hi"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "From dotenv\n"
    assert tgi_endpoint.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_the_environment_beats_the_dotenv_file(tgi_endpoint, closed_port_url, tmp_path):
    tgi_endpoint.stream([" Hi"])
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / ".env").write_text(f"HF_API_KEY=dotenv-key\nHF_API_FALCOM_BASE={closed_port_url}\n")
    env = {"HF_API_KEY": "env-key", "HF_API_FALCOM_BASE": tgi_endpoint.url}
    result = falconchat(["ask", "hi"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert tgi_endpoint.requests[0].headers["authorization"] == "Bearer env-key"

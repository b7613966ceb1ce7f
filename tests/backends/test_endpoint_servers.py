"""`--endpoint URL` alone against real servers we did not write the client side of: llama-cpp-python's
OpenAI-compatible server and `falconchat serve` (TGI's API). The probe picks the right API each time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_openai import KEY, free_port, start_server

from processes import falconchat, isolated_env, one_error_line

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serve"))
from serve_process import ServeProcess

pytestmark = pytest.mark.process

pytest.importorskip("llama_cpp.server")


@pytest.fixture(scope="module")
def llama_server():
    port = free_port()
    proc = start_server(port)
    yield f"http://127.0.0.1:{port}"  # no /v1: the probe finds it
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    server = ServeProcess(tmp_path_factory.mktemp("serve"))
    yield server
    server.stop()


def ask_json(url: str, tmp_path: Path, *args: str, **env: str) -> dict:
    result = falconchat(
        "ask",
        "--json",
        "--endpoint",
        url,
        "-t",
        "0",
        "--max-new-tokens",
        "8",
        *args,
        "Say hi.",
        cwd=tmp_path,
        env=isolated_env(tmp_path, **env),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_llama_cpp_server_is_spoken_to_in_openai(llama_server, tmp_path):
    record = ask_json(llama_server, tmp_path, FALCONCHAT_API_KEY=KEY)
    assert record["backend"] == "openai" and record["model"] == "smollm2"
    assert record["endpoint"] == llama_server + "/v1"
    assert record["completion_tokens"] > 0 and record["reply"]


def test_serve_is_spoken_to_in_tgi(serve, tmp_path):
    record = ask_json(serve.url, tmp_path)
    assert record["backend"] == "tgi" and record["model"] == "smollm2"
    assert record["completion_tokens"] > 0 and record["reply"]


def test_models_lists_what_each_server_serves(llama_server, serve, tmp_path):
    env = isolated_env(tmp_path, FALCONCHAT_API_KEY=KEY)
    listed = falconchat("models", "--endpoint", llama_server, cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "OpenAI-compatible API (llama-cpp-python)" in listed.stdout.decode() and "smollm2" in listed.stdout.decode()
    listed = falconchat("models", "--endpoint", serve.url, cwd=tmp_path, env=isolated_env(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert "TGI API\n" in listed.stdout.decode() and "smollm2" in listed.stdout.decode()


def test_a_wrong_key_is_exit_4_from_the_probe(llama_server, tmp_path):
    result = falconchat("ask", "--endpoint", llama_server, "hi", cwd=tmp_path, env=isolated_env(tmp_path))
    assert result.returncode == 4, result.stderr
    assert result.stderr.decode().count("\n") == 1 and "Traceback" not in result.stderr.decode()


def test_schema_replies_from_llama_cpp_server_validate_or_fail_closed(llama_server, tmp_path):
    """llama-cpp-python turns the schema into a grammar; its grammar lets a raw line break into a
    string, so a reply can run on to max-new-tokens. Whatever it sends, falconchat prints only
    JSON that validates (exit 0) or says why not on one line (exit 5): never a silent success."""
    valid = 0
    for seed in ("1", "2", "3"):
        result = falconchat(
            "ask",
            "--endpoint",
            llama_server,
            "--schema",
            "name, age int, city",
            "--seed",
            seed,
            "-t",
            "0.8",
            "--max-new-tokens",
            "120",
            "Describe a person.",
            cwd=tmp_path,
            env=isolated_env(tmp_path, FALCONCHAT_API_KEY=KEY),
        )
        if result.returncode == 0:
            value = json.loads(result.stdout)  # piped: exactly the JSON
            assert set(value) == {"name", "age", "city"} and isinstance(value["age"], int)
            valid += 1
        else:
            assert result.returncode == 5 and result.stdout == b""
            assert one_error_line(result.stderr).startswith("falconchat: error: the reply")
    assert valid >= 1, "the server's grammar never produced a valid reply"


def test_schema_through_serve_is_tgis_grammar_and_validates(serve, tmp_path):
    """`falconchat serve` takes TGI's `grammar`: the reply is held to the schema there, and checked here."""
    result = falconchat(
        "ask",
        "--endpoint",
        serve.url,
        "--schema",
        '{"type":"object","properties":{"name":{"type":"string","maxLength":20},"age":{"type":"integer"}},'
        '"required":["name","age"]}',
        "--seed",
        "1",
        "--max-new-tokens",
        "80",
        "Describe a person.",
        cwd=tmp_path,
        env=isolated_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    value = json.loads(result.stdout)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)

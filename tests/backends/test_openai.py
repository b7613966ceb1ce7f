"""The `openai` backend against a real OpenAI-compatible server: llama-cpp-python's own
server (`python -m llama_cpp.server`) serving the bundled GGUF on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

import peers
from falconchat.backends.gguf import bundled_model_path
from falconchat.backends.openai import OpenAIBackend
from falconchat.config_models import ModelSpec
from falconchat.conversation import Conversation
from falconchat.errors import AuthRejected, EndpointError, Unreachable
from falconchat.types import Done, SamplingParams, TextDelta
from processes import falconchat, isolated_env

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

pytest.importorskip("openai")
pytest.importorskip("llama_cpp.server")

KEY = "test-key-123"
GREEDY = SamplingParams(temperature=0, max_new_tokens=30)
# A completion any model continues well past 500 tokens (counting goes on, even under the server's default
# repetition penalty of 1.1, with commas), so long replies are really long.
COUNTING = "".join(f"{n}, " for n in range(1, 21)).rstrip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        peers.command(  # its weights not repacked, as falconchat loads them (see tests/peers.py)
            "llama_cpp.server",
            "--model",
            str(bundled_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            "smollm2",
            "--api_key",
            KEY,
            "--n_ctx",
            "2048",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(
                f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=1
            ).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = start_server(port)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=10)


def backend(url: str, form: str = "chat", key: str | None = KEY) -> OpenAIBackend:
    return OpenAIBackend(
        ModelSpec(name="smollm2", backend="openai", endpoint=url, api_key=key, format=form, timeout=30)
    )


def collect(events):
    events = list(events)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def test_chat_api_streams_a_reply(server):
    b = backend(server)
    fitted = Conversation().prompt_for("What is the capital of France?", b.count_tokens, 1000)
    text, done = collect(b.stream_messages(fitted.messages, GREEDY))
    assert text.strip()  # which words is the model's choice (llama.cpp differs per CPU)
    assert isinstance(done, Done) and done.finish_reason in ("stop", "length")


def test_completions_api_with_the_falcon_prompt_and_stops(server):
    b = backend(server, "falcon")
    prompt = Conversation().prompt_for("What is the capital of France?", b.count_tokens, 1000).text
    text, _done = collect(b.stream(prompt, GREEDY.with_changes(max_new_tokens=60)))
    assert text.strip() and not text.startswith(" ")
    assert "\nUser:" not in text


def test_closing_the_stream_stops_the_server(server):
    """Closed after a few tokens of a long reply, the server is free for the next request at once,
    far sooner than the long reply would have taken."""
    b = backend(server, "falcon")
    prompt = COUNTING
    started = time.monotonic()
    _, done = collect(b.stream(prompt, GREEDY.with_changes(max_new_tokens=300)))
    full = time.monotonic() - started
    assert done.finish_reason == "length", "the long reply must really be long for this check"
    stream = b.stream(prompt, GREEDY.with_changes(max_new_tokens=300))
    for _ in range(3):
        next(stream)
    stream.close()
    started = time.monotonic()
    _text, _ = collect(
        b.stream_messages([{"role": "user", "content": "Say hi."}], GREEDY.with_changes(max_new_tokens=5))
    )
    assert time.monotonic() - started < full / 2, "the server went on generating the closed reply"


def test_a_wrong_key_is_auth_rejected(server):
    with pytest.raises(AuthRejected) as caught:
        collect(backend(server, key="wrong").stream_messages([{"role": "user", "content": "hi"}], GREEDY))
    assert caught.value.exit_code == 4 and "wrong" not in caught.value.message


def test_nothing_listening_is_unreachable():
    with pytest.raises(Unreachable):
        collect(
            backend(f"http://127.0.0.1:{free_port()}/v1").stream_messages([{"role": "user", "content": "hi"}], GREEDY)
        )


def test_the_server_killed_mid_reply_keeps_what_arrived():
    port = free_port()
    proc = start_server(port)
    b = backend(f"http://127.0.0.1:{port}/v1", "falcon")
    conversation = Conversation()
    events = conversation.record("count", b.stream(COUNTING, GREEDY.with_changes(max_new_tokens=500)))
    arrived = [next(events) for _ in range(3)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises(EndpointError) as caught:
        for _ in events:
            pass
    assert caught.value.exit_code == 1
    assert conversation.turns[-1].status == "error"
    assert conversation.turns[-1].assistant.startswith("".join(e.text for e in arrived))


def test_ask_through_a_named_openai_model(server, tmp_path):
    env = isolated_env(tmp_path, OPENAI_TEST_KEY=KEY)
    config = tmp_path / "config" / "falconchat"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(
        f'[models.llamacpp]\nbackend = "openai"\nendpoint = "{server}"\nmodel = "smollm2"\napi_key_env = "OPENAI_TEST_KEY"\n'
    )
    result = falconchat(
        "ask",
        "-m",
        "llamacpp",
        "-t",
        "0",
        "--max-new-tokens",
        "30",
        "What is the capital of France?",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and b"\x1b" not in result.stdout
    listed = falconchat("models", cwd=tmp_path, env=env)
    assert listed.returncode == 0
    line = next(row for row in listed.stdout.decode().splitlines() if "llamacpp" in row)
    assert "openai" in line and line.rstrip().endswith("ok")

"""The TGI contract's finer points, with clients we did not write (text_generation.Client,
huggingface_hub.InferenceClient, the openai SDK, requests for raw HTTP): top tokens and top
logprobs, prefill logprobs, `details` only when asked, streamed validation errors, POST /'s
defaults, the health routes. Every body and event is validated against our copy of TGI's schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import openai
import pytest
import requests
from huggingface_hub import InferenceClient
from text_generation import Client
from text_generation.errors import ValidationError

pytestmark = [pytest.mark.process, pytest.mark.slow]  # real servers on the bundled model

SCHEMAS = json.loads((Path(__file__).parent / "tgi_schemas.json").read_text())
PROMPT = "User: What is the capital of France?\nAssistant:"
TIMEOUT_S = 120


def check(instance, name: str) -> None:
    jsonschema.validate(instance, {"$ref": f"#/$defs/{name}", "$defs": SCHEMAS["$defs"]})


def sse(response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.iter_lines() if line.startswith(b"data:")]


def assert_top(top: list, chosen, n: int, greedy: bool) -> None:
    """n alternatives, most likely first, logprobs of a distribution; greedy picks the first."""
    assert len(top) == n
    logprobs = [t.logprob for t in top]
    assert logprobs == sorted(logprobs, reverse=True)
    assert all(lp <= 0 for lp in logprobs) and sum(2.718281828**lp for lp in logprobs) <= 1.0 + 1e-6
    assert len({t.id for t in top}) == n
    if greedy:
        assert top[0].id == chosen.id and top[0].logprob == pytest.approx(chosen.logprob)
    else:
        assert chosen.logprob <= top[0].logprob + 1e-9


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """A server on the single-sequence path (the module's `server` runs the batching engine)."""
    from serve_process import running

    with running(tmp_path_factory.mktemp("serve1"), "--parallel", "1") as process:
        yield process


@pytest.mark.parametrize("path", ["batching", "single"])
def test_top_n_tokens_and_prefill_logprobs(request, server, path):
    url = (server if path == "batching" else request.getfixturevalue("single")).url
    client = Client(url, timeout=TIMEOUT_S)
    response = client.generate(PROMPT, max_new_tokens=6, top_n_tokens=3, decoder_input_details=True)
    details = response.details
    assert len(details.top_tokens) == len(details.tokens)
    for chosen, top in zip(details.tokens, details.top_tokens):
        if chosen.special:  # the end token: TGI's own top tokens there are not kept by this server
            continue
        assert_top(top, chosen, 3, greedy=True)
    # Prefill: the first token has nothing before it to predict it; every other one is a number.
    prefill = details.prefill
    assert len(prefill) >= 5 and prefill[0].logprob is None
    assert all(isinstance(t.logprob, float) and t.logprob <= 0 for t in prefill[1:])
    streamed = list(client.generate_stream(PROMPT, max_new_tokens=4, top_n_tokens=2, temperature=0.8, seed=5))
    for event in streamed:
        if not event.token.special:
            assert_top(event.top_tokens, event.token, 2, greedy=False)
    raw = requests.post(url + "/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 2}}, timeout=60)
    check(raw.json(), "GenerateResponse")


def test_top_n_tokens_above_five_is_refused(server):
    client = Client(server.url, timeout=TIMEOUT_S)
    with pytest.raises(ValidationError, match="top_n_tokens"):
        client.generate(PROMPT, max_new_tokens=2, top_n_tokens=6)
    with pytest.raises(ValidationError, match="top_n_tokens"):
        list(client.generate_stream(PROMPT, max_new_tokens=2, top_n_tokens=6))


def test_openai_top_logprobs(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=300, max_retries=0)
    messages = [{"role": "user", "content": "Name a colour."}]
    reply = client.chat.completions.create(
        model="smollm2", messages=messages, max_tokens=5, temperature=0, logprobs=True, top_logprobs=4
    )
    content = reply.choices[0].logprobs.content
    assert content
    for token in content:
        logprobs = [t.logprob for t in token.top_logprobs]
        assert len(logprobs) == 4 and logprobs == sorted(logprobs, reverse=True)
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob)  # greedy: the best one
    body = {"messages": messages, "max_tokens": 3, "logprobs": True, "top_logprobs": 2, "stream": True}
    with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=300) as response:
        lines = [line[5:].strip() for line in response.iter_lines() if line.startswith(b"data:")]
    chunks = [json.loads(line) for line in lines if line != b"[DONE]"]
    streamed = []
    for chunk in chunks:
        check(chunk, "ChatCompletionChunk")
        logprobs = chunk["choices"][0]["logprobs"] if chunk["choices"] else None
        streamed += logprobs["content"] if logprobs else []
    assert streamed and all(len(token["top_logprobs"]) == 2 for token in streamed)


def test_details_only_when_asked_on_the_stream(server):
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3}}
    with requests.post(server.url + "/generate_stream", json=body, stream=True, timeout=TIMEOUT_S) as response:
        plain = sse(response)
    for index, event in enumerate(plain):
        check(event, "StreamResponse")
        assert event["index"] == index
        assert event["details"] is None
    assert plain[-1]["generated_text"] is not None
    # huggingface_hub asks for details: the last event carries them.
    hub = InferenceClient(server.url, timeout=TIMEOUT_S)
    events = list(hub.text_generation(PROMPT, max_new_tokens=3, stream=True, details=True))
    assert all(e.details is None for e in events[:-1])
    assert events[-1].details.finish_reason in ("length", "eos_token", "stop_sequence")
    assert events[-1].details.generated_tokens >= 1


def test_a_streamed_validation_error_is_one_error_event_in_a_200_stream(server):
    body = {"inputs": PROMPT, "parameters": {"temperature": -1}, "stream": True}
    for route in ("/generate_stream", "/"):
        with requests.post(server.url + route, json=body, stream=True, timeout=10) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse(response)
        assert len(events) == 1
        check(events[0], "ErrorResponse")
        assert events[0]["error_type"] == "validation" and "temperature" in events[0]["error"]
    # Unreadable bodies are still a 422: TGI refuses them before it knows they stream.
    response = requests.post(server.url + "/generate_stream", data=b"{", timeout=10)
    assert response.status_code == 422


def test_post_root_returns_the_full_text_unless_told_otherwise(server):
    def root(**parameters):
        body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, **parameters}}
        response = requests.post(server.url + "/", json=body, timeout=TIMEOUT_S)
        assert response.status_code == 200
        check(response.json()[0], "GenerateResponse")
        return response.json()[0]["generated_text"]

    assert root().startswith(PROMPT)
    assert not root(return_full_text=False).startswith(PROMPT)
    generate = requests.post(server.url + "/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 3}})
    assert not generate.json()["generated_text"].startswith(PROMPT)


def test_a_prompt_near_the_context_without_max_new_tokens_is_accepted(server):
    """No max_new_tokens: as TGI, what the context leaves (a fixed 100 would refuse this one)."""
    info = requests.get(server.url + "/info", timeout=10).json()
    tokens = requests.post(server.url + "/tokenize", json={"inputs": "hello " * 10}, timeout=10).json()
    per_word = len(tokens) / 10
    words = int((info["max_total_tokens"] - 60) / per_word)
    body = {"inputs": "hello " * words, "parameters": {"details": True, "stop": ["\n"]}}
    response = requests.post(server.url + "/generate", json=body, timeout=300)
    assert response.status_code == 200, response.text
    assert response.json()["details"]["generated_tokens"] <= info["max_total_tokens"] - words * per_word + 2


@pytest.mark.parametrize("path", ["/", "/ping", "/health"])
def test_health_routes(server, path):
    assert requests.get(server.url + path, timeout=10).status_code == 200

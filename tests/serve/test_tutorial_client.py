"""The classic tutorial's `text_generation` code, unchanged but for the URL, against `falconchat serve`."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests
from text_generation import AsyncClient, Client
from text_generation.errors import ValidationError

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

FINISH_REASONS = {"length", "eos_token", "stop_sequence"}
INSTRUCTION = "You are a helpful assistant. Answer in one short sentence."
QUESTION = "What is the capital of France?"  # the words of the answer are the model's choice, not a contract
TIMEOUT_S = 120  # the tutorial's own client timeout; generous on a busy machine


def format_chat_prompt(message, chat_history, instruction):
    """As the tutorial writes it."""
    prompt = f"System:{instruction}"
    for turn in chat_history:
        user_message, bot_message = turn
        prompt = f"{prompt}\nUser: {user_message}\nAssistant: {bot_message}"
    prompt = f"{prompt}\nUser: {message}\nAssistant:"
    return prompt


FRANCE = format_chat_prompt(QUESTION, [], INSTRUCTION)
COUNTING = format_chat_prompt("Count from one to fifty.", [], "You count.")  # a reply longer than a few tokens


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, timeout=TIMEOUT_S)


def joined(tokens) -> str:
    return "".join(token.text for token in tokens if not token.special)


def test_generate_as_in_the_tutorial(client):
    response = client.generate(FRANCE, max_new_tokens=256)
    assert response.generated_text.strip()
    details = response.details
    assert details.finish_reason.value in FINISH_REASONS
    assert details.seed is None  # greedy
    assert details.generated_tokens == len(details.tokens)
    assert joined(details.tokens) == response.generated_text


def test_the_tutorial_streaming_loop(client):
    history = [["Hello!", "Hello! How can I help you today?"]]
    prompt = format_chat_prompt(QUESTION, history, INSTRUCTION)
    assert prompt == (
        f"System:{INSTRUCTION}\nUser: Hello!\nAssistant: Hello! How can I help you today?\nUser: {QUESTION}\nAssistant:"
    )
    text, events = "", []
    for response in client.generate_stream(prompt, stop_sequences=["\nUser:"], temperature=0.7, max_new_tokens=48):
        events.append(response)
        if not response.token.special:
            text += response.token.text
    last = events[-1]
    assert all(event.details is None and event.generated_text is None for event in events[:-1])
    assert last.details is not None and last.generated_text is not None
    assert text, "no text was streamed"
    assert text == last.generated_text
    assert last.details.finish_reason.value in FINISH_REASONS
    assert last.details.generated_tokens == len(events)
    assert last.details.seed is not None  # sampling reports the seed it used
    if last.details.finish_reason.value == "stop_sequence":
        assert text.endswith("\nUser:")


def test_a_stream_that_ends_at_the_end_token_loses_no_text(client):
    """A one-sentence answer ends with the end token well before 256 tokens on any machine we know;
    either way, the streamed tokens are the whole text."""
    events = list(client.generate_stream(FRANCE, max_new_tokens=256))
    last = events[-1]
    assert last.details.finish_reason.value in ("eos_token", "length")
    assert last.token.special == (last.details.finish_reason.value == "eos_token")
    assert last.details.seed is None
    assert last.details.generated_tokens == len(events)
    assert joined(event.token for event in events) == last.generated_text
    assert last.generated_text.strip()


def test_a_stop_sequence_ends_the_generation(client):
    """A word from the middle of the greedy reply, as a stop: the same reply (greedy is
    deterministic on one machine) is cut right after it."""
    free = client.generate(COUNTING, max_new_tokens=40).generated_text
    words = free.split()
    assert len(words) >= 4, free
    stop = words[len(words) // 2]
    response = client.generate(COUNTING, max_new_tokens=40, stop_sequences=[stop])
    assert response.details.finish_reason.value == "stop_sequence"
    assert response.generated_text.endswith(stop)
    assert free.startswith(response.generated_text)
    assert response.details.generated_tokens == len(response.details.tokens)


def test_max_new_tokens_ends_with_length(client):
    response = client.generate(COUNTING, max_new_tokens=5)
    assert response.details.finish_reason.value == "length"
    assert response.details.generated_tokens == len(response.details.tokens) == 5


def test_greedy_is_deterministic(client):
    prompt = format_chat_prompt("Tell me about the sea.", [], INSTRUCTION)
    first = client.generate(prompt, max_new_tokens=16)
    second = client.generate(prompt, max_new_tokens=16)
    assert first.generated_text == second.generated_text
    assert first.details.seed is None and second.details.seed is None


def test_a_seed_makes_sampling_repeatable(client):
    prompt = format_chat_prompt("Tell me about the sea.", [], INSTRUCTION)
    first = client.generate(prompt, max_new_tokens=12, temperature=0.9, seed=1234, do_sample=True)
    second = client.generate(prompt, max_new_tokens=12, temperature=0.9, seed=1234, do_sample=True)
    assert first.generated_text == second.generated_text
    assert first.details.seed == second.details.seed == 1234


def test_decoder_input_details_returns_the_prefill(client):
    response = client.generate(FRANCE, max_new_tokens=3, decoder_input_details=True)
    prefill = response.details.prefill
    assert prefill, "no prefill tokens"
    assert all(isinstance(token.id, int) for token in prefill)
    assert FRANCE in "".join(token.text for token in prefill)


def test_return_full_text_prefixes_the_input(client):
    response = client.generate(FRANCE, max_new_tokens=5, return_full_text=True)
    assert response.generated_text.startswith(FRANCE)
    assert len(response.generated_text) > len(FRANCE)


def test_the_client_raises_its_own_validation_error(client, server):
    with pytest.raises(ValidationError):
        client.generate(FRANCE, max_new_tokens=server_info(server)["max_total_tokens"] + 1)
    with pytest.raises(ValidationError):
        client.generate(FRANCE, max_new_tokens=5, stop_sequences=["a", "b", "c", "d", "e"])
    with pytest.raises(ValidationError):
        list(client.generate_stream(FRANCE, max_new_tokens=5, stop_sequences=["a", "b", "c", "d", "e"]))


def test_the_async_client(server):
    async def talk():
        client = AsyncClient(server.url, timeout=TIMEOUT_S)
        whole = await client.generate(FRANCE, max_new_tokens=48)
        streamed = [response async for response in client.generate_stream(FRANCE, max_new_tokens=48)]
        return whole, streamed

    whole, streamed = asyncio.run(talk())
    assert whole.generated_text.strip()
    assert streamed[-1].generated_text == whole.generated_text  # greedy: the same answer both ways


# ---- the routes, with plain HTTP -------------------------------------------------------------


def server_info(server) -> dict:
    response = requests.get(server.url + "/info", timeout=10)
    assert response.status_code == 200
    return response.json()


def sse_events(response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.iter_lines() if line.startswith(b"data:")]


def test_post_root_without_stream_answers_a_one_element_list(server):
    body = {"inputs": FRANCE, "parameters": {"max_new_tokens": 8, "details": True}, "stream": False}
    response = requests.post(server.url + "/", json=body, timeout=TIMEOUT_S)
    assert response.status_code == 200
    answer = response.json()
    assert isinstance(answer, list) and len(answer) == 1
    assert answer[0]["generated_text"].strip()
    assert answer[0]["details"]["finish_reason"] in FINISH_REASONS


def test_post_root_with_stream_answers_server_sent_events(server):
    body = {"inputs": FRANCE, "parameters": {"max_new_tokens": 8, "details": True}, "stream": True}
    with requests.post(server.url + "/", json=body, stream=True, timeout=TIMEOUT_S) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert len(events) >= 2
    for event in events:
        assert set(event["token"]) >= {"id", "text", "logprob", "special"}
    assert all(event["details"] is None for event in events[:-1])
    assert events[-1]["details"]["finish_reason"] in FINISH_REASONS
    # POST / returns the full text by default, as TGI for a text-generation model.
    assert events[-1]["generated_text"] == FRANCE + "".join(
        event["token"]["text"] for event in events if not event["token"]["special"]
    )


def test_generate_stream_tokens_carry_ids_and_logprobs(server):
    body = {"inputs": COUNTING, "parameters": {"max_new_tokens": 4, "details": True}}
    with requests.post(server.url + "/generate_stream", json=body, stream=True, timeout=TIMEOUT_S) as response:
        events = sse_events(response)
    assert len(events) == 4
    for event in events:
        assert isinstance(event["token"]["id"], int)
        assert event["token"]["logprob"] <= 0
        assert event["token"]["special"] is False
    assert events[-1]["details"]["finish_reason"] == "length"


def test_info(server):
    info = server_info(server)
    assert info["model_id"] == "smollm2"
    assert 0 < info["max_input_tokens"] < info["max_total_tokens"]
    assert info["max_stop_sequences"] >= 1
    assert info["max_best_of"] == 1
    assert isinstance(info["version"], str)


def test_health(server):
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


def test_tokenize_gives_ids_and_byte_offsets(server):
    text = "Hello wörld, ça va — 日本!"  # characters of 2 and 3 bytes: offsets count bytes, as TGI's
    data = text.encode()
    response = requests.post(server.url + "/tokenize", json={"inputs": text}, timeout=10)
    assert response.status_code == 200
    tokens = response.json()
    assert len(tokens) >= 3
    position = 0
    for token in tokens:
        assert isinstance(token["id"], int)
        assert token["start"] == position
        assert data[token["start"] : token["stop"]].decode("utf-8", "replace") == token["text"]
        position = token["stop"]
    assert position == len(data) > len(text)


def test_the_log_never_shows_the_prompt(server):
    assert server.log.count("\n") >= 10  # the requests above were logged...
    for text in (QUESTION, INSTRUCTION, "Hello world", "Tell me about the sea"):
        assert text not in server.log  # ...without what was asked

"""The library on real models: the bundled one in process, and endpoints over real HTTP (the
scripted TGI and OpenAI-compatible endpoints of tests/). Public names only: `falconchat.X`."""

from __future__ import annotations

import pytest

import falconchat
from openai_endpoint import OpenAIEndpoint


@pytest.fixture
def openai_endpoint():
    server = OpenAIEndpoint()
    yield server
    server.close()


@pytest.mark.process  # a scripted endpoint over real HTTP
def test_an_endpoint_url_is_probed_and_answers_with_the_sampling_values_asked(tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Bonjour", " le", " monde"], finish_reason="eos_token")
    with falconchat.open_model(tgi_endpoint.url, environ={}, cwd=tmp_path) as model:
        stream = model.stream("Say hello in French.", temperature=0.2, max_new_tokens=40, seed=3)
        assert "".join(stream) == "Bonjour le monde"
        reply = stream.result()
    assert reply.finish_reason == "stop" and reply.completion_tokens == 3
    parameters = tgi_endpoint.requests[-1].body["parameters"]
    assert (parameters["temperature"], parameters["max_new_tokens"], parameters["seed"]) == (0.2, 40, 3)
    assert "Say hello in French." in tgi_endpoint.requests[-1].body["inputs"]


@pytest.mark.process
def test_a_named_endpoint_model_keeps_a_conversation(openai_endpoint, tmp_path):
    (tmp_path / "config.toml").write_text(f'[models.remote]\nendpoint = "{openai_endpoint.url}"\n')
    openai_endpoint.reply(["Paris", "."]).reply(["About 2 million."])
    with falconchat.open_model("remote", config="config.toml", environ={}, cwd=tmp_path) as model:
        chat = model.conversation(system="Answer in one line.")
        assert chat.reply("Capital of France?").text == "Paris."
        assert chat.reply("Its population?").text == "About 2 million."
    messages = openai_endpoint.posts()[-1]["messages"]
    assert messages == [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Its population?"},
    ]


@pytest.mark.process
def test_a_server_that_ignores_the_schema_is_caught(openai_endpoint, tmp_path):
    """A server that answers 200 with prose where JSON was asked for: the reply is refused,
    as `ask --schema` refuses it (exit 5), never handed back as if it fit."""
    openai_endpoint.reply(["Sure! Ada is 36."])
    with (
        falconchat.open_model(endpoint=openai_endpoint.url, environ={}, cwd=tmp_path) as model,
        pytest.raises(falconchat.InvalidReply, match="not JSON") as refused,
    ):
        model.reply("Who?", schema="name, age int")
    assert refused.value.exit_code == 5
    assert openai_endpoint.posts()[-1]["response_format"]["type"] == "json_schema"


@pytest.mark.slow  # loads the bundled model and generates
def test_the_bundled_model_answers(tmp_path):
    with falconchat.open_model(environ={}, cwd=tmp_path) as model:
        stream = model.stream("What is the capital of France?", temperature=0, max_new_tokens=24)
        pieces = list(stream)
        reply = stream.result()
        assert "".join(pieces) == reply.text and reply.text.strip()
        assert reply.finish_reason in ("stop", "length") and 0 < reply.completion_tokens <= 24
        assert reply.prompt_tokens > 0 and reply.model == "smollm2"

        chat = model.conversation(system="You are a helpful assistant.")
        chat.reply("Name a colour.", temperature=0, max_new_tokens=16)
        chat.reply("Name another.", temperature=0, max_new_tokens=16)
        assert [turn.status in ("complete", "length") for turn in chat.turns] == [True, True]
        assert all(turn.assistant.strip() for turn in chat.turns)

        person = model.reply("Describe a person.", schema="name, age int", temperature=0, max_new_tokens=96)
        assert set(person.value) == {"name", "age"} and isinstance(person.value["age"], int)

"""`serve`'s Messages API driven by clients we did not write: the `openai` SDK and
`huggingface_hub.InferenceClient`, over real HTTP; every response and stream event validated
against the schemas of TGI's OpenAPI file (tests/serve/tgi_schemas.json, our copy)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jsonschema
import openai
import pytest
import requests

pytestmark = [pytest.mark.process, pytest.mark.slow]  # a real server on the bundled model

SCHEMAS = json.loads((Path(__file__).parent / "tgi_schemas.json").read_text())
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0},
        "city": {"type": "string", "maxLength": 24},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
PET = {
    "type": "object",
    "properties": {"species": {"type": "string", "enum": ["cat", "dog", "fish"]}, "legs": {"type": "integer"}},
    "required": ["species", "legs"],
}
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}
LONG = [{"role": "user", "content": "Write a long, detailed essay about the history of computing."}]


def check(instance: dict, name: str) -> None:
    """Validate against TGI's schema `name` (from our copy of its OpenAPI components)."""
    jsonschema.validate(instance, {"$ref": f"#/$defs/{name}", "$defs": SCHEMAS["$defs"]})


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=300, max_retries=0)


def events(server, path: str, payload: dict) -> list:
    """The stream's `data:` payloads, raw (the last is "[DONE]")."""
    with requests.post(server.url + path, json=payload, stream=True, timeout=300) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return [line[len("data:") :].strip().decode() for line in response.iter_lines() if line.startswith(b"data:")]


def test_models_lists_the_served_model(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == ["smollm2"]
    check(requests.get(server.url + "/v1/models", timeout=10).json()["data"][0], "ModelInfo")
    assert client.models.retrieve("smollm2").id == "smollm2"
    assert requests.get(server.url + "/v1/models/other", timeout=10).status_code == 404


def test_chat_completion_with_usage_and_logprobs(client, server):
    reply = client.chat.completions.create(model="smollm2", messages=LONG, max_tokens=12, temperature=0, logprobs=True)
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant" and choice.message.content
    assert reply.usage.completion_tokens == 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12
    assert len(choice.logprobs.content) == 12
    assert all(t.logprob <= 0 for t in choice.logprobs.content)
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
    raw = requests.post(
        server.url + "/v1/chat/completions", json={"messages": LONG, "max_tokens": 12, "temperature": 0}, timeout=300
    ).json()
    check(raw, "ChatCompletion")
    assert raw["choices"][0]["message"]["content"] == choice.message.content  # greedy: the same text


def test_streamed_chat_gives_the_same_text_and_ends_with_done(client, server):
    payload = {"messages": LONG, "max_tokens": 16, "seed": 7, "stream": True, "stream_options": {"include_usage": True}}
    raw = events(server, "/v1/chat/completions", payload)
    assert raw[-1] == "[DONE]"
    chunks = [json.loads(e) for e in raw[:-1]]
    for chunk in chunks:
        check(chunk, "ChatCompletionChunk")
        assert chunk["object"] == "chat.completion.chunk"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 16
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]][-1] == "length"
    streamed = "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1])

    sdk = client.chat.completions.create(model="m", messages=LONG, max_tokens=16, seed=7, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in sdk if c.choices) == streamed
    whole = client.chat.completions.create(model="m", messages=LONG, max_tokens=16, seed=7)
    assert whole.choices[0].message.content == streamed  # the same seed, the same text


def test_a_stop_sequence_ends_the_reply_and_is_not_shown(client):
    free = client.chat.completions.create(model="m", messages=LONG, max_tokens=30, temperature=0)
    words = free.choices[0].message.content.split(" ")
    stop = " " + words[3]  # a word from the middle of the greedy reply
    cut = free.choices[0].message.content.split(stop)[0]
    reply = client.chat.completions.create(model="m", messages=LONG, max_tokens=30, temperature=0, stop=[stop])
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == cut
    streamed = client.chat.completions.create(
        model="m", messages=LONG, max_tokens=30, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut


def test_response_format_json_schema_replies_validate(client):
    for seed in range(4):
        reply = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Describe a person."}],
            max_tokens=120,
            seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
        )
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), PERSON)
    reply = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Any JSON object."}],
        max_tokens=120,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_grammars_in_continuous_batching_each_reply_valid_and_free_ones_unchanged(server, client):
    """8 clients at once, half held to different schemas: each constrained reply validates
    against its own schema; each free one gives the text it gives alone."""
    free = [[{"role": "user", "content": f"Write a long essay about {topic}."}] for topic in ("rain", "trains", "tea")]
    free.append(LONG)
    held = [(PERSON, "Describe a person."), (PET, "Describe a pet."), (PERSON, "Someone else?"), (PET, "A pet!")]
    alone = [client.chat.completions.create(model="m", messages=m, max_tokens=24, seed=5) for m in free]
    results: dict = {}

    def free_job(i: int) -> None:
        results[i] = client.chat.completions.create(model="m", messages=free[i], max_tokens=24, seed=5)

    def held_job(i: int) -> None:
        schema, question = held[i]
        results[("held", i)] = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": question}],
            max_tokens=120,
            seed=i,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )

    threads = [threading.Thread(target=free_job, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=held_job, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert [results[i].choices[0].message.content for i in range(4)] == [a.choices[0].message.content for a in alone]
    for i, (schema, _) in enumerate(held):
        jsonschema.validate(json.loads(results[("held", i)].choices[0].message.content), schema)


def test_completions_stream_and_not(client, server):
    prompt = "Once upon a time, in a land far away,"
    whole = client.completions.create(model="m", prompt=prompt, max_tokens=10, temperature=0)
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 10
    raw = requests.post(
        server.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 10, "temperature": 0}, timeout=300
    ).json()
    check(raw, "CompletionFinal")
    assert raw["object"] == "text_completion" and raw["choices"][0]["text"] == whole.choices[0].text
    raw_events = events(
        server, "/v1/completions", {"prompt": prompt, "max_tokens": 10, "temperature": 0, "stream": True}
    )
    assert raw_events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in raw_events[:-1]]
    for chunk in chunks:
        check(chunk, "Chunk")
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole.choices[0].text


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"n": 2}, "`n` must be 1"),
        ({"tools": [TOOL]}, "`tools`"),
        ({"tools": [TOOL], "tool_choice": "auto"}, "`tools`"),
        ({"top_logprobs": 6, "logprobs": True}, "top_logprobs"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "bogus"}}}}, "JSON schema"),
        ({"response_format": {"type": "regex", "value": "(unclosed"}}, "invalid regex"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 100_000}, "max_new_tokens"),
    ],
)
def test_what_cannot_be_honoured_is_refused_with_the_openai_error_body(server, extra, words):
    response = requests.post(
        server.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], **extra}, timeout=60
    )
    assert response.status_code == 422, response.text
    check_openai_error(response.json(), "validation")
    assert words in response.json()["error"]["message"]


def check_openai_error(body: dict, error_type: str) -> None:
    """The OpenAI API's error shape (what its SDKs read the message from), TGI's `error_type` beside it."""
    assert set(body) == {"error", "error_type"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert isinstance(body["error"]["type"], str) and body["error"]["type"], body
    assert body["error_type"] == error_type, body


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_sdk_shows_the_reason_for_a_refusal(client, stream):
    """It read TGI's flat body as a bare "Error code: 422": the reason was lost."""
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], n=2, stream=stream)
    assert "`n` must be 1" in str(caught.value)
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.completions.create(model="m", prompt="hi", temperature=3, stream=stream)
    assert "`temperature` must be >= 0.0 and <= 2.0" in str(caught.value)


def test_an_unknown_model_is_the_openai_not_found_error(client, server):
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("other")
    assert "'other' not found" in str(caught.value) and caught.value.code == "model_not_found"
    check_openai_error(requests.get(server.url + "/v1/models/other", timeout=10).json(), "not_found")


def test_the_generate_api_keeps_tgis_flat_error_body(server):
    response = requests.post(server.url + "/generate", json={"inputs": "hi", "parameters": {"top_k": 0}}, timeout=60)
    assert response.status_code == 422
    assert set(response.json()) == {"error", "error_type"} and isinstance(response.json()["error"], str)
    check(response.json(), "ErrorResponse")


def test_tools_with_tool_choice_none_are_answered_without_tools(client):
    plain = client.chat.completions.create(model="m", messages=LONG, max_tokens=6, temperature=0)
    without = client.chat.completions.create(
        model="m", messages=LONG, max_tokens=6, temperature=0, tools=[TOOL], tool_choice="none"
    )
    assert without.choices[0].message.content == plain.choices[0].message.content  # greedy: the tools left out
    assert not without.choices[0].message.tool_calls
    assert without.choices[0].finish_reason == "length"


def test_a_lone_surrogate_escape_is_refused_as_tgi_does(server):
    body = rb'{"messages": [{"role": "user", "content": "hi \ud800"}], "max_tokens": 2}'
    response = requests.post(server.url + "/v1/chat/completions", data=body, timeout=60)
    assert response.status_code == 422, response.text
    check_openai_error(response.json(), "validation")
    assert "surrogate" in response.json()["error"]["message"]
    paired = body.replace(rb"\ud800", rb"\ud83d\ude00")  # a surrogate pair is one character: accepted
    assert requests.post(server.url + "/v1/chat/completions", data=paired, timeout=300).status_code == 200


def test_huggingface_hub_chat_completion(server):
    hub = pytest.importorskip("huggingface_hub")
    inference = hub.InferenceClient(base_url=server.url, timeout=300)
    reply = inference.chat_completion(messages=LONG, max_tokens=8, temperature=0.0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens == 8
    streamed = inference.chat_completion(messages=LONG, max_tokens=8, temperature=0.0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == reply.choices[0].message.content


def test_falconchat_openai_backend_is_a_client_of_serve(server, tmp_path):
    """`[models.NAME]` with `base_url` (OpenAI's name for it) and backend = "openai", against serve's /v1;
    `--schema` goes as response_format and the reply validates."""
    from processes import falconchat, isolated_env

    config = tmp_path / "config.toml"
    config.write_text(f'[models.mine]\nbackend = "openai"\nbase_url = "{server.url}/v1"\nmodel = "smollm2"\n')
    env = isolated_env(tmp_path)
    plain = falconchat(
        "--config", str(config), "ask", "-m", "mine", "--max-tokens", "8", "Say hello", cwd=tmp_path, env=env
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip()
    schema = json.dumps(PET)
    shaped = falconchat(
        "--config", str(config), "ask", "-m", "mine", "--max-tokens", "60", "--schema", schema, "A pet?",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert shaped.returncode == 0, shaped.stderr
    jsonschema.validate(json.loads(shaped.stdout), PET)


def test_metrics_and_tgis_x_headers(server):
    generate = requests.post(
        server.url + "/generate",
        json={"inputs": "Hello", "parameters": {"max_new_tokens": 5, "details": True}},
        timeout=300,
    )
    assert generate.status_code == 200
    assert generate.headers["x-generated-tokens"] == "5"
    assert int(generate.headers["x-prompt-tokens"]) > 0
    chat = requests.post(server.url + "/v1/chat/completions", json={"messages": LONG, "max_tokens": 4}, timeout=300)
    usage = chat.json()["usage"]
    assert chat.headers["x-prompt-tokens"] == str(usage["prompt_tokens"])
    assert chat.headers["x-generated-tokens"] == str(usage["completion_tokens"])
    for name in ("x-compute-time", "x-queue-time", "x-total-time", "x-inference-time"):
        assert float(chat.headers[name]) >= 0, name
    requests.post(server.url + "/generate", json={"inputs": ""}, timeout=60)  # a validation failure

    text = requests.get(server.url + "/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples["tgi_request_count"] >= 3 and samples["tgi_request_success"] >= 2
    assert samples['tgi_request_failure{err="validation"}'] >= 1
    assert samples["tgi_queue_size"] == 0 and samples["tgi_batch_current_size"] == 0
    assert samples["tgi_generated_tokens_total"] >= 9
    for histogram in ("tgi_request_duration", "tgi_request_queue_duration", "tgi_request_generated_tokens",
                      "tgi_request_input_length", "tgi_request_time_to_first_token"):  # fmt: skip
        assert samples[f"{histogram}_count"] >= 2
        assert samples[f'{histogram}_bucket{{le="+Inf"}}'] == samples[f"{histogram}_count"]

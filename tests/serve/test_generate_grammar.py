"""`grammar` on the generate API, as TGI takes it (`json`, `json_schema`, `regex`), driven by
`text_generation.Client` and `huggingface_hub.InferenceClient`: every reply holds to its grammar."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import requests
from text_generation import Client
from text_generation.types import Grammar, GrammarType

pytestmark = [pytest.mark.process, pytest.mark.slow]  # a real server on the bundled model

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PROMPT = "<|im_start|>user\nDescribe a person.<|im_end|>\n<|im_start|>assistant\n"
DATE = r"(19|20)\d\d-(0[1-9]|1[0-2])-[0-3]\d"


def test_json_grammar_through_the_tutorial_client(server):
    client = Client(server.url, timeout=300)
    for seed in range(3):
        reply = client.generate(
            PROMPT,
            max_new_tokens=100,
            do_sample=True,
            seed=seed,
            grammar=Grammar(type=GrammarType.Json, value=PERSON),
        )
        assert reply.details.finish_reason == "eos_token"
        jsonschema.validate(json.loads(reply.generated_text), PERSON)
    streamed = "".join(
        r.token.text
        for r in client.generate_stream(
            PROMPT, max_new_tokens=100, grammar=Grammar(type=GrammarType.Json, value=PERSON)
        )
        if not r.token.special
    )
    jsonschema.validate(json.loads(streamed), PERSON)


def test_regex_and_json_schema_grammars_over_plain_http(server):
    hub = pytest.importorskip("huggingface_hub")
    inference = hub.InferenceClient(base_url=server.url, timeout=300)
    text = inference.text_generation(
        "When was the web invented? Date: ",
        max_new_tokens=20,
        grammar={"type": "regex", "value": DATE},
        return_full_text=False,  # POST / returns the prompt too unless told, as TGI for a text-generation model
    )
    assert re.fullmatch(DATE, text), text
    response = requests.post(
        server.url + "/generate",
        json={
            "inputs": PROMPT,
            "parameters": {
                "max_new_tokens": 100,
                "grammar": {"type": "json_schema", "value": {"name": "person", "schema": PERSON}},
            },
        },
        timeout=300,
    )
    assert response.status_code == 200, response.text
    jsonschema.validate(json.loads(response.json()["generated_text"]), PERSON)


def test_an_invalid_grammar_is_a_422_with_a_clear_message(server):
    response = requests.post(
        server.url + "/generate",
        json={"inputs": "hi", "parameters": {"grammar": {"type": "json", "value": {"properties": {"a": 5}}}}},
        timeout=60,
    )
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"
    assert "invalid JSON schema at properties/a" in response.json()["error"]

"""Malformed requests: each refused with a 4xx and TGI's error body, before any work reaches the model."""

from __future__ import annotations

import json

import pytest
import requests
from serve_process import parse_request_line

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

PROMPT = "User: What is the capital of France?\nAssistant:"
TOO_LONG_PROMPT = "hello " * 5000  # more tokens than the bundled model's 4096-token context
STREAMED = 200  # as TGI: a streamed request that fails validation is a 200 stream of one error event
REFUSAL_TIMEOUT_S = 10  # a refusal takes milliseconds; a request wrongly accepted would be generating


def raw(text: str) -> bytes:
    """A body sent exactly as written (Python's json would refuse to write some of these)."""
    return text.encode()


def params(**values) -> dict:
    return {"inputs": PROMPT, "parameters": values}


# (id, route, body: a dict/list/str sent as JSON, or bytes sent as they are, status expected)
CASES = [
    ("not json", "/generate", raw("inputs=hello"), 422),
    ("truncated json", "/generate_stream", raw('{"inputs": "hi"'), 422),
    ("empty body", "/generate", raw(""), 422),
    ("json array", "/generate", ["hi"], 422),
    ("json string", "/", "hi", 422),
    ("NaN literal", "/generate", raw('{"inputs": "hi", "parameters": {"temperature": NaN}}'), 422),
    ("Infinity literal", "/generate_stream", raw('{"inputs": "hi", "parameters": {"max_new_tokens": Infinity}}'), 422),
    ("-Infinity literal", "/", raw('{"inputs": "hi", "parameters": {"top_p": -Infinity}}'), 422),
    ("number overflowing to infinity", "/generate", raw('{"inputs": "hi", "parameters": {"temperature": 1e999}}'), 422),
    ("missing inputs", "/generate", {"parameters": {"max_new_tokens": 5}}, 422),
    ("empty inputs", "/generate_stream", {"inputs": ""}, STREAMED),
    ("inputs a number", "/generate", {"inputs": 42}, 422),
    ("inputs null", "/", {"inputs": None}, 422),
    ("inputs a list", "/generate", {"inputs": ["hi"]}, 422),
    ("parameters a string", "/generate", {"inputs": PROMPT, "parameters": "fast"}, 422),
    ("parameters a list", "/generate_stream", {"inputs": PROMPT, "parameters": [1, 2]}, 422),
    ("parameters an empty list", "/generate", {"inputs": PROMPT, "parameters": []}, 422),
    ("temperature 0", "/generate", params(temperature=0), 422),
    ("temperature negative", "/generate_stream", params(temperature=-0.5), STREAMED),
    ("temperature a string", "/", params(temperature="hot"), 422),
    ("temperature true", "/generate", params(temperature=True), 422),
    ("top_p 0", "/generate", params(top_p=0), 422),
    ("top_p 1", "/generate_stream", params(top_p=1), STREAMED),
    ("top_p 1.5", "/", params(top_p=1.5), 422),
    ("top_k 0", "/generate", params(top_k=0), 422),
    ("top_k -1", "/generate_stream", params(top_k=-1), STREAMED),
    ("top_k 2.5", "/generate", params(top_k=2.5), 422),
    ("repetition_penalty 0", "/generate", params(repetition_penalty=0), 422),
    ("max_new_tokens 0", "/generate", params(max_new_tokens=0), 422),
    ("max_new_tokens -3", "/generate_stream", params(max_new_tokens=-3), STREAMED),
    ("max_new_tokens a string", "/", params(max_new_tokens="10"), 422),
    ("max_new_tokens beyond the total", "/generate", params(max_new_tokens=5000), 422),
    ("inputs beyond the context", "/generate", {"inputs": TOO_LONG_PROMPT, "parameters": {"max_new_tokens": 1}}, 422),
    ("best_of 2", "/generate", params(best_of=2), 422),
    ("5 stop sequences", "/generate_stream", params(stop=["a", "b", "c", "d", "e"]), STREAMED),
    ("stop a string", "/generate", params(stop="\nUser:"), 422),
    ("stop an empty string", "/generate", params(stop="", max_new_tokens=1), 422),
    ("stop with an empty string", "/generate", params(stop=[""]), 422),
    ("stop with a number", "/", params(stop=[1]), 422),
    ("truncate 0", "/generate", params(truncate=0), 422),
    ("truncate beyond the input limit", "/generate", params(truncate=100_000), 422),
    ("seed -1", "/generate", params(seed=-1), 422),
    ("seed a string", "/generate_stream", params(seed="1"), 422),
    ("typical_p 1", "/generate", params(typical_p=1), 422),
    ("frequency_penalty 3", "/generate", params(frequency_penalty=3), 422),
    ("grammar with an invalid schema", "/generate", params(grammar={"type": "json", "value": {"type": "bogus"}}), 422),
    ("grammar with an invalid regex", "/generate_stream", params(grammar={"type": "regex", "value": "(a"}), STREAMED),
    ("grammar of an unknown type", "/generate", params(grammar={"type": "gbnf", "value": "root ::= x"}), 422),
    ("grammar without a value", "/", params(grammar={"type": "json"}), 422),
    ("details a string", "/generate", params(details="yes"), 422),
    ("a lone surrogate escape", "/generate", raw('{"inputs": "hi \\ud800"}'), 422),
    (
        "a lone surrogate escape, streamed",
        "/generate_stream",
        raw('{"inputs": "hi", "parameters": {"stop": ["\\udc00"]}}'),
        422,
    ),
    ("do_sample a number", "/generate", params(do_sample=1), 422),
    (
        "decoder_input_details while streaming",
        "/generate_stream",
        params(decoder_input_details=True, max_new_tokens=1),
        STREAMED,
    ),
    ("stream a string", "/", {"inputs": PROMPT, "stream": "yes"}, 422),
    ("body over 2 MB", "/generate", {"inputs": "a" * 2_100_000}, 413),
    (
        "json nested 5,000 levels",
        "/generate",
        raw('{"inputs": "hi", "parameters": ' + "[" * 5000 + "]" * 5000 + "}"),
        422,
    ),
    ("json nested 5,000 objects", "/generate_stream", raw('{"a": ' * 5000 + "1" + "}" * 5000), 422),
    ("top_n_tokens 6", "/generate", params(top_n_tokens=6, max_new_tokens=1), 422),
    ("top_n_tokens -1", "/generate", params(top_n_tokens=-1), 422),
    ("tokenize: not json", "/tokenize", raw("hello"), 422),
    ("tokenize: json nested 5,000 levels", "/tokenize", raw("[" * 5000 + "]" * 5000), 422),
    ("tokenize: missing inputs", "/tokenize", {"text": "hello"}, 422),
    ("tokenize: empty inputs", "/tokenize", {"inputs": ""}, 422),
]


def send(url: str, body, *, stream: bool = False, timeout: float = 60) -> requests.Response:
    if isinstance(body, bytes):
        return requests.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout, stream=stream
        )
    return requests.post(url, json=body, timeout=timeout, stream=stream)


@pytest.mark.parametrize("route, body, status", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_malformed_request_is_refused_before_the_model(server, route, body, status):
    mark = server.mark()
    try:
        response = send(server.url + route, body, timeout=REFUSAL_TIMEOUT_S)
    except requests.Timeout:
        pytest.fail(f"no answer within {REFUSAL_TIMEOUT_S}s: the request was accepted and is generating")
    assert response.status_code == status, response.text
    if status == STREAMED:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.content.splitlines() if line.strip()]
        assert len(events) == 1 and events[0].startswith(b"data:"), response.content
        error = json.loads(events[0][5:])
    else:
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()
    assert set(error) == {"error", "error_type"}, error
    assert error["error_type"] == "validation"
    assert isinstance(error["error"], str) and error["error"]
    assert "Traceback" not in error["error"]
    # The server's own account: refused, and not a single token generated.
    line = server.request_line(route, since=mark).string
    assert parse_request_line(line)[2:] == (status, 0, ""), line


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
    assert len({case[0] for case in CASES}) == len(CASES)


def test_after_the_table_the_server_is_healthy(server):
    assert "Traceback" not in server.log
    assert "generation" not in server.log  # no generation started, not even one cancelled
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    mark = server.mark()
    response = requests.post(server.url + "/generate", json=params(max_new_tokens=3), timeout=60)
    assert response.status_code == 200
    assert response.json()["generated_text"]
    line = server.request_line("/generate", since=mark).string
    assert parse_request_line(line)[2:] == (200, 3, ""), line


@pytest.mark.parametrize("route", ["/generate", "/generate_stream", "/"])
def test_unknown_fields_are_ignored(server, route):
    body = {
        "inputs": PROMPT,
        "parameters": {"max_new_tokens": 2, "details": True, "foo": 1, "adapter_id": None},
        "bar": True,
    }
    with send(server.url + route, body, stream=True) as response:
        assert response.status_code == 200, response.text
        content = response.content
    if route == "/generate_stream":
        last = [line for line in content.splitlines() if line.startswith(b"data:")][-1]
        assert json.loads(last[5:])["details"]["generated_tokens"] == 2
    else:
        answer = response.json()
        assert (answer[0] if route == "/" else answer)["generated_text"]


@pytest.mark.parametrize("method, path", [("GET", "/v1/nothing"), ("POST", "/nothing"), ("GET", "/generate/x")])
def test_a_route_that_does_not_exist_is_a_bare_404(server, method, path):
    response = requests.request(method, server.url + path, timeout=10)
    assert response.status_code == 404
    assert response.content == b""  # as TGI (axum's fallback): no body at all


def test_a_wrong_method_is_a_405_with_the_error_body(server):
    response = requests.get(server.url + "/generate", timeout=10)
    assert response.status_code == 405
    assert set(response.json()) == {"error", "error_type"}


@pytest.mark.parametrize("route", ["/generate", "/generate_stream"])
def test_validation_messages_start_as_tgis(server, route):
    """Clients match on TGI's wording: a refused parameter reads `Input validation error: …`,
    in a 422 body or, streamed, in the one error event."""
    response = send(server.url + route, {"inputs": "hi", "parameters": {"top_n_tokens": 6}}, timeout=REFUSAL_TIMEOUT_S)
    if route == "/generate":
        assert response.status_code == 422, response.text
        error = response.json()
    else:
        assert response.status_code == 200, response.text
        error = json.loads(response.content.strip().splitlines()[0][5:])
    assert error["error"].startswith("Input validation error: "), error
    assert "top_n_tokens" in error["error"]

"""`serve` decodes many requests together: the same tokens as one at a time (up to a near
tie, see tests/near_tie.py), all of them at once."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from near_tie import TOP_N, Step, near_tie_difference

pytestmark = pytest.mark.slow  # loads the bundled model and generates

QUESTIONS = [
    "the ocean",
    "ancient Rome",
    "space travel",
    "music",
    "the history of computing",
    "volcanoes",
    "trains",
    "the printing press",
]


def body(topic: str) -> dict:
    return {
        "inputs": f"User: Write a long, detailed essay about {topic}.\nAssistant:",
        "parameters": {"max_new_tokens": 40, "details": True},
    }


def alone(server, payload: dict) -> list[Step]:
    """One request on an idle server: each token with the most likely ones at its step."""
    asked = {**payload, "parameters": {**payload["parameters"], "top_n_tokens": TOP_N}}
    response = requests.post(server.url + "/generate", json=asked, timeout=120)
    assert response.status_code == 200, response.text
    details = response.json()["details"]
    return [
        Step(token["id"], token["logprob"], {t["id"]: t["logprob"] for t in top})
        for token, top in zip(details["tokens"], details["top_tokens"], strict=True)
        if not token["special"]
    ]


def assert_near_tie_equal(alone: dict[str, list[Step]], together: dict[str, list[int]]) -> None:
    problems = {key: near_tie_difference(steps, together[key]) for key, steps in alone.items()}
    assert not any(problems.values()), problems


def stream(server, payload: dict, times: dict, key: str) -> list[int]:
    """Stream one request (its token ids); record when its first token and its end arrived."""
    import json

    tokens = []
    with requests.post(server.url + "/generate_stream", json=payload, stream=True, timeout=300) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines():
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                times.setdefault(key + ".first", time.monotonic())
                if not event["token"]["special"]:
                    tokens.append(event["token"]["id"])
    times[key + ".end"] = time.monotonic()
    return tokens


def test_eight_clients_at_once_get_their_one_at_a_time_replies_together(server):
    info = requests.get(server.url + "/info", timeout=10).json()
    assert info["max_concurrent_requests"] >= 8 + 1, info
    one_at_a_time = {topic: alone(server, body(topic)) for topic in QUESTIONS}
    times: dict[str, float] = {}
    together: dict[str, list[int]] = {}

    def client(topic):
        together[topic] = stream(server, body(topic), times, topic)

    threads = [threading.Thread(target=client, args=(topic,)) for topic in QUESTIONS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert_near_tie_equal(one_at_a_time, together)
    # Decoded together: every client had its first token before the first of them finished.
    assert max(times[t + ".first"] for t in QUESTIONS) < min(times[t + ".end"] for t in QUESTIONS)


def test_a_generate_request_while_others_stream_is_the_same_too(server):
    payload = {**body("trains"), "parameters": {**body("trains")["parameters"], "top_n_tokens": TOP_N}}
    one_at_a_time = alone(server, payload)
    background = [threading.Thread(target=stream, args=(server, body(t), {}, t)) for t in QUESTIONS[:4]]
    for thread in background:
        thread.start()
    during = requests.post(server.url + "/generate", json=payload, timeout=120).json()["details"]["tokens"]
    for thread in background:
        thread.join(timeout=300)
    assert_near_tie_equal({"trains": one_at_a_time}, {"trains": [t["id"] for t in during if not t["special"]]})

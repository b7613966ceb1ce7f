"""`serve` decodes many requests together: the same text as one at a time, all of them at once."""

from __future__ import annotations

import threading
import time

import pytest
import requests

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


def stream(server, payload: dict, times: dict, key: str) -> str:
    """Stream one request; record when its first token and its end arrived."""
    import json

    text = []
    with requests.post(server.url + "/generate_stream", json=payload, stream=True, timeout=300) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines():
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                times.setdefault(key + ".first", time.monotonic())
                if not event["token"]["special"]:
                    text.append(event["token"]["text"])
    times[key + ".end"] = time.monotonic()
    return "".join(text)


def test_eight_clients_at_once_get_their_one_at_a_time_replies_together(server):
    info = requests.get(server.url + "/info", timeout=10).json()
    assert info["max_concurrent_requests"] >= 8 + 1, info
    alone = {topic: stream(server, body(topic), {}, topic) for topic in QUESTIONS}
    times: dict[str, float] = {}
    together: dict[str, str] = {}

    def client(topic):
        together[topic] = stream(server, body(topic), times, topic)

    threads = [threading.Thread(target=client, args=(topic,)) for topic in QUESTIONS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert together == alone
    # Decoded together: every client had its first token before the first of them finished.
    assert max(times[t + ".first"] for t in QUESTIONS) < min(times[t + ".end"] for t in QUESTIONS)


def test_a_generate_request_while_others_stream_is_exact_too(server):
    payload = body("trains")
    alone = requests.post(server.url + "/generate", json=payload, timeout=120).json()["generated_text"]
    background = [threading.Thread(target=stream, args=(server, body(t), {}, t)) for t in QUESTIONS[:4]]
    for thread in background:
        thread.start()
    during = requests.post(server.url + "/generate", json=payload, timeout=120).json()["generated_text"]
    for thread in background:
        thread.join(timeout=300)
    assert during == alone

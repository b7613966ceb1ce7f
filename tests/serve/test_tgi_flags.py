"""`serve`'s TGI flags: `--max-concurrent-requests` (and the older `--max-waiting`), `--max-batch-size`,
`--max-input-tokens`, `--max-total-tokens`, as a real server reports and applies them."""

from __future__ import annotations

import pytest
import requests

from processes import falconchat, isolated_env, one_error_line

pytestmark = pytest.mark.process  # starts real servers


def info(server) -> dict:
    return requests.get(server.url + "/info", timeout=10).json()


def test_tgis_defaults(server):
    reported = info(server)
    assert reported["max_concurrent_requests"] == 128  # TGI's default (it was 16 waiting + the decoding places)
    assert reported["max_total_tokens"] == reported["max_input_tokens"] + 1  # the model's whole context


def test_the_flags_are_reported_by_info_and_applied(start_server):
    server = start_server(
        "--max-concurrent-requests",
        "7",
        "--max-batch-size",
        "2",
        "--max-input-tokens",
        "40",
        "--max-total-tokens",
        "60",
    )
    reported = info(server)
    assert (reported["max_concurrent_requests"], reported["max_batch_size"]) == (7, 2)
    assert (reported["max_input_tokens"], reported["max_input_length"], reported["max_total_tokens"]) == (40, 40, 60)
    counting = ", ".join(str(n) for n in range(1, 40))  # more than 40 tokens
    response = requests.post(server.url + "/generate", json={"inputs": counting}, timeout=60)
    assert response.status_code == 422 and "must have less than 40 tokens" in response.json()["error"]
    response = requests.post(
        server.url + "/generate", json={"inputs": "1, 2, 3", "parameters": {"max_new_tokens": 58}}, timeout=60
    )
    assert response.status_code == 422 and "must be <= 60" in response.json()["error"]
    response = requests.post(
        server.url + "/generate", json={"inputs": "1, 2, 3", "parameters": {"max_new_tokens": 3}}, timeout=60
    )
    assert response.status_code == 200, response.text


def test_max_waiting_is_the_places_beyond_those_decoding(start_server):
    assert info(start_server("--max-waiting", "3", "--parallel", "2"))["max_concurrent_requests"] == 5


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--max-waiting", "3", "--max-concurrent-requests", "9"], "not both"),
        (["--max-input-tokens", "60", "--max-total-tokens", "60"], "must be less than --max-total-tokens"),
        (["--max-total-tokens", "999999"], "more than the model's context"),
    ],
)
def test_flags_that_cannot_be_honoured_are_one_error_line(tmp_path, args, words):
    result = falconchat("serve", "--port", "0", *args, cwd=tmp_path, env=isolated_env(tmp_path), timeout=120)
    assert result.returncode == 2, result.stderr
    assert words in one_error_line(result.stderr)

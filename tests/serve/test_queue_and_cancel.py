"""The queue (FIFO, bounded, 429 beyond), clients that leave, the API key, and where the server listens."""

from __future__ import annotations

import contextlib
import socket
import time

import openai
import pytest
import requests
from serve_process import CANCELLED, parse_request_line, running
from text_generation import Client
from text_generation.errors import OverloadedError

from processes import falconchat, isolated_env, one_error_line

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

# Counting goes on: any model continues "1, 2, … 20," until max_new_tokens, so this generation keeps the
# model busy for as long as a test holds it (within a sequence's 2,048 tokens), and a short one is never
# cut short by the end token.
COUNTING = "".join(f"{n}, " for n in range(1, 21)).rstrip()
LONG = {"inputs": COUNTING, "parameters": {"max_new_tokens": 1900}}  # with its ~70 prompt tokens
KEY = "test-serve-key-6f1d2c"


def short(tokens: int = 3) -> dict:
    return {"inputs": COUNTING, "parameters": {"max_new_tokens": tokens}}


def open_stream(server, body: dict) -> requests.Response:
    """POST /generate_stream and return at the headers: the request is then in the server's queue."""
    response = requests.post(server.url + "/generate_stream", json=body, stream=True, timeout=120)
    assert response.status_code == 200, response.text
    # One line iterator for the response's life: urllib3 closes the connection when one is abandoned.
    response.lines = response.iter_lines()
    return response


def data_events(response, count: int) -> list[bytes]:
    events = []
    for line in response.lines:
        if line.startswith(b"data:"):
            events.append(line)
            if len(events) == count:
                break
    return events


@contextlib.contextmanager
def busy(server):
    """The model busy with a long generation for the duration of the block (read slowly: not at all)."""
    response = open_stream(server, LONG)
    assert data_events(response, 1), "the long generation did not start"
    mark = server.mark()
    try:
        yield response
    finally:
        response.close()
    # It was still generating when released: its end is a cancellation, logged as such.
    server.wait_for(CANCELLED, since=mark, timeout=10, what="the long generation to be cancelled")


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """One sequence at a time (no continuous batching): one long request makes the others wait."""
    with running(tmp_path_factory.mktemp("serve"), "--parallel", "1") as process:
        yield process


@pytest.fixture(scope="module")
def no_queue(tmp_path_factory):
    with running(tmp_path_factory.mktemp("serve"), "--max-waiting", "0", "--parallel", "1") as process:
        yield process


@pytest.fixture(scope="module")
def small_queue(tmp_path_factory):
    # One sequence at a time (no continuous batching), so that one request fills the model.
    with running(tmp_path_factory.mktemp("serve"), "--max-waiting", "1", "--parallel", "1") as process:
        yield process


# ---- the queue -------------------------------------------------------------------------------


def test_a_request_beyond_the_waiting_limit_gets_429(small_queue):
    with busy(small_queue):
        waiting = open_stream(small_queue, short())  # one generating, one waiting: the queue is full
        mark = small_queue.mark()
        response = requests.post(small_queue.url + "/generate", json=short(), timeout=10)
        assert response.status_code == 429
        assert response.json()["error_type"] == "overloaded"
        assert set(response.json()) == {"error", "error_type"}
        assert parse_request_line(small_queue.request_line("/generate", since=mark).string)[2:4] == (429, 0)

        sdk = openai.OpenAI(base_url=small_queue.url + "/v1", api_key="unused", timeout=10, max_retries=0)
        with pytest.raises(openai.RateLimitError, match="Model is overloaded") as caught:
            sdk.completions.create(model="m", prompt="hi", max_tokens=2)
        assert caught.value.code == "rate_limit_exceeded"

        client = Client(small_queue.url, timeout=10)
        with pytest.raises(OverloadedError):
            client.generate("hi", max_new_tokens=3)
        with pytest.raises(OverloadedError):
            list(client.generate_stream("hi", max_new_tokens=3))
    with waiting:
        assert len(data_events(waiting, 4)) == 3  # served once the model was free
    assert requests.post(small_queue.url + "/generate", json=short(), timeout=60).status_code == 200


def test_an_overloaded_request_is_refused_before_its_body_is_read(small_queue):
    """The 429 comes before parsing and validation (a body that is not even JSON gets it, not a
    422): turning requests away costs the model nothing, and says when to ask again."""
    with busy(small_queue):
        waiting = open_stream(small_queue, short())  # the two places taken
        for path in ("/generate", "/generate_stream", "/", "/v1/chat/completions", "/v1/completions"):
            response = requests.post(small_queue.url + path, data=b"not json {", timeout=10)
            assert response.status_code == 429, (path, response.text)
            assert response.headers["Retry-After"] == "1", path
            assert response.json()["error_type"] == "overloaded"
        assert requests.post(small_queue.url + "/tokenize", data=b"not json {", timeout=10).status_code == 422
    with waiting:
        assert len(data_events(waiting, 4)) == 3


def test_a_client_that_leaves_the_queue_frees_its_place_at_once(small_queue):
    """While the model is still busy with the first request, not when the queue reaches it."""
    with busy(small_queue):
        mark = small_queue.mark()
        open_stream(small_queue, short()).close()  # waiting, then gone
        line = small_queue.request_line("/generate_stream", since=mark).string  # its handler has ended
        assert parse_request_line(line)[3:] == (0, "cancelled"), small_queue.log
        assert "tgi_batch_current_size 1" in requests.get(small_queue.url + "/metrics", timeout=10).text
        after = open_stream(small_queue, short())  # its place: accepted, not a 429
        assert requests.post(small_queue.url + "/generate", json=short(), timeout=10).status_code == 429  # full again
        assert "tgi_batch_current_size 1" in requests.get(small_queue.url + "/metrics", timeout=10).text  # still busy
    with after:
        assert len(data_events(after, 4)) == 3


def test_first_come_first_served_across_clients(serial):
    """One client with many requests queued does not starve another: the queue is one FIFO line."""
    server = serial
    first, second = requests.Session(), requests.Session()
    order = [(first, 3), (first, 4), (second, 5), (first, 6), (second, 7), (first, 8)]
    with busy(server):
        mark = server.mark()
        waiting = []
        for client, tokens in order:  # each is in the queue when its headers come back
            response = client.post(server.url + "/generate_stream", json=short(tokens), stream=True, timeout=120)
            assert response.status_code == 200, response.text
            response.lines = response.iter_lines()
            waiting.append(response)
    for response, (_, tokens) in zip(waiting, order):
        with response:
            assert len(data_events(response, tokens + 1)) == tokens
    server.wait_for(r"^POST /generate_stream 200 8 tokens", since=mark)
    served = [parse_request_line(line) for line in server.lines[mark:] if line.startswith("POST /generate_stream")]
    assert [request[3] for request in served if request[4] != "cancelled"] == [tokens for _, tokens in order]


def test_max_waiting_0_serves_a_free_place_and_queues_nothing(no_queue):
    """--max-waiting 0 means no queue: an idle server answers, a busy one says 429 at once."""
    assert requests.post(no_queue.url + "/generate", json=short(), timeout=60).status_code == 200
    with busy(no_queue):
        response = requests.post(no_queue.url + "/generate", json=short(), timeout=10)
        assert response.status_code == 429 and response.json()["error_type"] == "overloaded"
    # The free place is back once the cancelled generation has let go of the model (a moment after its log line).
    deadline = time.monotonic() + 10
    while (status := requests.post(no_queue.url + "/generate", json=short(), timeout=60).status_code) == 429:
        assert time.monotonic() < deadline, "the free place never came back"
        time.sleep(0.1)
    assert status == 200


def test_waiting_requests_are_served_in_order(serial):
    server = serial
    sizes = (3, 4, 5)
    with busy(server):
        mark = server.mark()
        waiting = [open_stream(server, short(tokens)) for tokens in sizes]  # queued in this order
    for response, tokens in zip(waiting, sizes):
        with response:
            assert len(data_events(response, tokens + 1)) == tokens
    # Each request logs its line as it completes: in submission order, told apart by their token counts.
    server.wait_for(r"^POST /generate_stream 200 5 tokens", since=mark)
    served = [parse_request_line(line) for line in server.lines[mark:] if line.startswith("POST /generate_stream")]
    assert [request[2:] for request in served if request[4] != "cancelled"] == [(200, n, "") for n in sizes]


def test_a_client_that_leaves_mid_generation_stops_it_within_two_tokens(server):
    mark = server.mark()
    response = open_stream(server, LONG)
    assert len(data_events(response, 5)) == 5
    response.close()
    cancelled = server.wait_for(CANCELLED, since=mark, timeout=5, what="the generation to stop")
    assert int(cancelled.group(2)) <= 2, cancelled.string
    line = server.request_line("/generate_stream", since=mark).string
    assert parse_request_line(line)[4] == "cancelled", line
    # The model is free at once for the next request.
    mark = server.mark()
    assert requests.post(server.url + "/generate", json=short(), timeout=10).status_code == 200
    assert parse_request_line(server.request_line("/generate", since=mark).string)[2:] == (200, 3, "")


def test_a_client_that_leaves_the_queue_is_dropped_before_it_starts(serial):
    server = serial
    with busy(server):
        mark = server.mark()
        open_stream(server, short()).close()
        # Its handler notices the closed connection while it waits (it is not yet the engine's turn).
        line = server.request_line("/generate_stream", since=mark).string
        assert parse_request_line(line)[3:] == (0, "cancelled"), server.log
    server.wait_for("generation cancelled before it started", since=mark, timeout=10)


def test_a_non_streaming_client_that_leaves_is_cancelled_too(server):
    mark = server.mark()
    with pytest.raises(requests.Timeout):
        requests.post(server.url + "/generate", json=LONG, timeout=1.5)
    cancelled = server.wait_for(CANCELLED, since=mark, timeout=5, what="the generation to stop")
    assert int(cancelled.group(2)) <= 2, cancelled.string


# ---- the API key -----------------------------------------------------------------------------

PROTECTED = [
    ("POST", "/generate", short()),
    ("POST", "/generate_stream", short()),
    ("POST", "/", short()),
    ("POST", "/tokenize", {"inputs": "hi"}),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    ("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2}),
]
OPEN = ["/health", "/info", "/metrics", "/v1/models"]  # as TGI: what describes the server is not guarded


def call(server, method: str, path: str, body, headers: dict | None = None) -> requests.Response:
    return requests.request(method, server.url + path, json=body, headers=headers or {}, timeout=60)


def test_an_api_key_protects_every_post_route(start_server):
    server = start_server("--api-key", KEY)
    for wrong in (
        {},
        {"Authorization": "Bearer not-the-key"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
        {"Authorization": f"Bearer {KEY}x"},
    ):
        for method, path, body in PROTECTED:
            response = call(server, method, path, body, wrong)
            assert response.status_code == 401, (path, wrong, response.text)
            assert set(response.json()) == {"error", "error_type"}
            assert response.json()["error_type"] == "authentication"
            if path.startswith("/v1/"):  # the OpenAI API's shape there, which its SDKs read
                assert response.json()["error"]["code"] == "invalid_api_key", response.text
            assert KEY not in response.text
    for path in OPEN:
        assert requests.get(server.url + path, timeout=10).status_code == 200, path
    for method, path, body in PROTECTED:
        response = call(server, method, path, body, {"authorization": f"bearer {KEY}"})  # any case
        assert response.status_code == 200, (path, response.text)
    assert Client(server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60).generate("hi", max_new_tokens=2)
    assert KEY not in server.stop()


def test_the_api_key_from_the_environment(start_server):
    server = start_server(env={"FALCONCHAT_SERVE_API_KEY": KEY})
    assert call(server, "POST", "/generate", short()).status_code == 401
    assert call(server, "POST", "/generate", short(), {"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    assert KEY not in server.stop()


# ---- stopping the server ---------------------------------------------------------------------


def test_ctrl_c_stops_the_server_in_the_middle_of_a_generation(start_server):
    server = start_server()
    with contextlib.closing(open_stream(server, LONG)) as response:
        assert data_events(response, 1)
        asked = time.monotonic()
        server.stop()  # exit code 0, no traceback
        assert time.monotonic() - asked < 10, "Ctrl-C waited for the generation to finish"


def test_ctrl_c_while_the_model_still_works_for_a_client_that_left(start_server):
    server = start_server()
    mark = server.mark()
    # A prompt of some 1,800 tokens: reading it takes the model a while after its client has gone.
    open_stream(
        server, {"inputs": "The history of the world, told at length. " * 180, "parameters": {"max_new_tokens": 50}}
    ).close()
    server.request_line("/generate_stream", since=mark)  # the server saw the client leave
    server.stop()  # exit code 0: the model is not freed under the engine's feet


# ---- where it listens ------------------------------------------------------------------------


def test_all_interfaces_without_a_key_warns(start_server):
    server = start_server("--host", "0.0.0.0")
    warnings = [line for line in server.lines if line.startswith("falconchat: warning:")]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0], server.log
    port = server.url.rsplit(":", 1)[1]
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200


def test_all_interfaces_with_a_key_does_not_warn(start_server):
    server = start_server("--host", "0.0.0.0", "--api-key", KEY)
    assert not any("warning" in line for line in server.lines), server.log


def test_loopback_does_not_warn(server):
    assert not any("warning" in line for line in server.lines), server.log


def test_a_port_in_use_is_one_error_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = falconchat("serve", "--port", str(port), cwd=tmp_path, env=isolated_env(tmp_path), timeout=60)
    assert result.returncode == 2, result.stderr
    assert str(port) in one_error_line(result.stderr)
    assert result.stdout == b""

"""Issue 28, "bad input under load": oversized bodies, deep JSON, slow-loris senders (of a body
or of headers) and streams that are never read are refused or timed out without holding a place
or a decoding slot, and a well-behaved request is answered meanwhile. Against a real `serve`
with a single place (one request decoding, none waiting), so that anything the hostile client
held would turn the well-behaved request away with a 429."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from serve_process import CANCELLED, REQUEST_LINE, parse_request_line, running

from falconchat.serve.validation import MAX_JSON_DEPTH

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

CLIENT_TIMEOUT_S = 3  # the server's --client-timeout in these tests
COUNTING = "".join(f"{n}, " for n in range(1, 21)).rstrip()


def well_behaved() -> dict:
    return {"inputs": COUNTING, "parameters": {"max_new_tokens": 3}}


@pytest.fixture(scope="module")
def one_place(tmp_path_factory):
    args = ("--max-waiting", "0", "--parallel", "1", "--client-timeout", str(CLIENT_TIMEOUT_S))
    with running(tmp_path_factory.mktemp("serve"), *args) as process:
        yield process


def gauges(server) -> tuple[int, int]:
    """(decoding, waiting) as /metrics says now."""
    text = requests.get(server.url + "/metrics", timeout=10).text
    running_now = int(re.search(r"^tgi_batch_current_size (\d+)$", text, re.M).group(1))
    waiting = int(re.search(r"^tgi_queue_size (\d+)$", text, re.M).group(1))
    return running_now, waiting


def settled(server, within_s: float = 10.0) -> tuple[int, int]:
    """The gauges once nothing is decoding or waiting, or as they are after `within_s`."""
    deadline = time.monotonic() + within_s
    now = gauges(server)
    while now != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
        now = gauges(server)
    return now


@contextlib.contextmanager
def raw_connection(server, *, receive_buffer: int | None = None):
    address = urlsplit(server.url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:  # set before connecting: the window the server sees stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((address.hostname, address.port))
    try:
        yield sock
    finally:
        sock.close()


def head(path: str, length: int, content_type: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def status_of(sock: socket.socket, timeout: float) -> int:
    """The status code of the response the server sends on `sock`."""
    sock.settimeout(timeout)
    received = b""
    while b"\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"the server closed the connection without a response: {received!r}")
        received += chunk
    return int(received.split(b" ", 2)[1])


def test_a_body_said_to_be_too_large_is_refused_at_once_without_being_read(one_place):
    with raw_connection(one_place) as sock:
        sock.sendall(head("/generate", 3_000_000))  # and never a byte of it
        assert status_of(sock, timeout=10) == 413
    # It held nothing, and neither does one that sends its oversized body.
    response = requests.post(one_place.url + "/generate", data=b"[" * 2_100_000, timeout=30)
    assert response.status_code == 413 and response.json()["error_type"] == "validation"
    assert requests.post(one_place.url + "/generate", json=well_behaved(), timeout=60).status_code == 200


def test_a_slow_loris_body_holds_no_place_and_is_timed_out(one_place):
    body = json.dumps(well_behaved()).encode()
    stop = threading.Event()
    with raw_connection(one_place) as sock:
        sock.sendall(head("/generate", len(body)))

        def trickle() -> None:  # a byte at a time, never the last one
            for byte in body[:-1]:
                if stop.wait(0.2):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            time.sleep(0.5)  # it is sending
            assert gauges(one_place) == (0, 0)
            mark = one_place.mark()
            answered = requests.post(one_place.url + "/generate", json=well_behaved(), timeout=60)
            assert answered.status_code == 200, answered.text  # the single place was free
            assert parse_request_line(one_place.request_line("/generate", since=mark).string)[2] == 200
            mark = one_place.mark()
            assert status_of(sock, timeout=CLIENT_TIMEOUT_S + 10) == 408  # timed out, answered
        finally:
            stop.set()
            sender.join(timeout=5)
    assert parse_request_line(one_place.request_line("/generate", since=mark).string)[2] == 408


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_refused_in_each_apis_shape_and_the_server_answers_on(one_place, depth):
    """Refused before it is parsed (Python's parser would recurse to its limit, where a garbage
    collection freeing a sampler failed with RecursionError), with nothing in the log but the
    request lines — after generations, so that there are samplers to free."""
    for _ in range(3):
        assert requests.post(one_place.url + "/generate", json=well_behaved(), timeout=60).status_code == 200
    mark = one_place.mark()
    nested = b'{"inputs": "hi", "parameters": {"stop": ' + b"[" * depth + b"]" * depth + b"}}"
    for path in ("/generate", "/generate_stream", "/v1/chat/completions", "/v1/completions"):
        response = requests.post(one_place.url + path, data=nested, timeout=30)
        assert response.status_code == 422, (path, response.text)
        error = response.json()
        assert error["error_type"] == "validation"
        message = error["error"]["message"] if path.startswith("/v1/") else error["error"]
        assert message == f"invalid JSON body: nested too deeply (more than {MAX_JSON_DEPTH} levels)"
    assert gauges(one_place) == (0, 0)
    assert requests.post(one_place.url + "/generate", json=well_behaved(), timeout=60).status_code == 200
    one_place.request_line("/generate", since=mark + 4)
    log = one_place.log.splitlines()[mark:]
    assert all(REQUEST_LINE.match(line) for line in log), "\n".join(log)


@pytest.mark.parametrize(
    "path, body",
    [
        # Events made large (top tokens, details), so that the socket's buffers fill early.
        (
            "/generate_stream",
            {"inputs": COUNTING, "parameters": {"max_new_tokens": 1900, "top_n_tokens": 5, "details": True}},
        ),
        ("/v1/completions", {"model": "m", "prompt": COUNTING, "max_tokens": 1900, "stream": True}),
    ],
)
def test_a_stream_that_is_never_read_is_dropped_after_the_client_timeout(one_place, path, body):
    """Its decoding slot is held only until its writes have waited --client-timeout: then its
    connection is reset (the client sees it without reading), the drop is logged and its
    generation stopped, and the place serves the next request."""
    data = json.dumps(body).encode()
    with raw_connection(one_place, receive_buffer=4096) as sock:
        mark = one_place.mark()
        sock.sendall(head(path, len(data)) + data)  # then reads nothing
        cancelled = one_place.wait_for(CANCELLED, since=mark, timeout=120, what="the unread stream to be dropped")
        assert int(cancelled.group(1)) < 1900  # stopped, not run to its end
        one_place.wait_for(f"dropped a client that read nothing of its reply for {CLIENT_TIMEOUT_S} s", since=mark)
        line = one_place.request_line(path, since=mark).string
        assert parse_request_line(line)[4] == "cancelled", line
        # Reset, not closed behind a full send buffer that the client's zero window holds open.
        deadline = time.monotonic() + 5
        while tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tcp_state(sock) != TCP_ESTABLISHED, "the connection is still open on the client's side"
        # The engine logs the cancel from its own thread and frees the sequence in that step:
        # /metrics may still count it for a moment.
        assert settled(one_place) == (0, 0)
        assert requests.post(one_place.url + "/generate", json=well_behaved(), timeout=60).status_code == 200


TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    """The connection's TCP state (the first byte of Linux's tcp_info), read without reading data."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes `sock` (end of stream or a reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass  # nothing is expected: no request arrived whole
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("trickle", [True, False], ids=["head-a-byte-at-a-time", "nothing-after-connecting"])
def test_a_request_head_that_does_not_arrive_is_dropped_after_the_client_timeout(one_place, trickle):
    """A slow-loris sender of headers (not the body) and a connection that sends nothing hold no
    place, and are closed once --client-timeout has passed without a whole request head."""
    padding = "x" * 4000  # a header line long enough to trickle for minutes
    partial = f"POST /generate HTTP/1.1\r\nHost: localhost\r\nX-Padding: {padding}".encode()
    stop = threading.Event()
    with raw_connection(one_place) as sock:

        def trickle_head() -> None:  # a byte every 0.2 s, never the blank line that ends the head
            for byte in partial:
                if stop.wait(0.2):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle_head, daemon=True)
        if trickle:
            sender.start()
        try:
            time.sleep(0.5)
            assert gauges(one_place) == (0, 0)
            answered = requests.post(one_place.url + "/generate", json=well_behaved(), timeout=60)
            assert answered.status_code == 200, answered.text  # the single place was free
            assert closed_by_server(sock, timeout=CLIENT_TIMEOUT_S + 10), "the connection is still held"
        finally:
            stop.set()
            if trickle:
                sender.join(timeout=5)
    assert requests.post(one_place.url + "/generate", json=well_behaved(), timeout=60).status_code == 200


def test_streams_that_are_never_read_do_not_keep_the_next_request_waiting(tmp_path):
    """Every decoding place taken by a stream its client never reads: the next request is
    answered long before --client-timeout drops them — a stalled sequence, paused, gives its
    place up (set aside until its client reads) — where it waited out the timeout before."""
    timeout_s = 60
    args = ("--parallel", "2", "--max-waiting", "4", "--client-timeout", str(timeout_s))
    body = {"inputs": COUNTING, "parameters": {"max_new_tokens": 1900, "top_n_tokens": 5, "details": True}}
    data = json.dumps(body).encode()
    with running(tmp_path, *args) as server, contextlib.ExitStack() as stack:
        mark = server.mark()
        for _ in range(2):
            sock = stack.enter_context(raw_connection(server, receive_buffer=4096))
            sock.sendall(head("/generate_stream", len(data)) + data)  # then read nothing
        answered = requests.post(server.url + "/generate", json=well_behaved(), timeout=timeout_s - 10)
        assert answered.status_code == 200
        assert "dropped a client" not in "\n".join(server.lines[mark:])


def test_a_stream_never_read_leaves_every_other_decoding_place_working_until_it_is_dropped(tmp_path):
    """A worker stands in for the stalled stream's job for as long as it stays stalled, not for one
    job: after two requests have gone through (the old stand-in's one job among them), two
    streams read normally still decode at once. Before, the stand-in retired after its one job,
    and the second of two streams waited for the first to end (the soak's clients got 0.8x)."""
    timeout_s = 60
    args = ("--parallel", "2", "--max-waiting", "8", "--client-timeout", str(timeout_s))
    stalled = json.dumps({"inputs": COUNTING, "parameters": {"max_new_tokens": 1900, "top_n_tokens": 5}}).encode()
    with running(tmp_path, *args) as server, raw_connection(server, receive_buffer=4096) as sock:
        sock.sendall(head("/generate_stream", len(stalled)) + stalled)  # then read nothing
        deadline = time.monotonic() + 30
        while gauges(server)[0] < 1 and time.monotonic() < deadline:  # until it decodes
            time.sleep(0.05)
        time.sleep(3)  # its client's window and the send buffers fill, then STAND_IN_AFTER_S passes

        def generate(tokens: int) -> int:
            body = {"inputs": COUNTING, "parameters": {"max_new_tokens": tokens}}
            return requests.post(server.url + "/generate", json=body, timeout=timeout_s - 10).status_code

        pair = [threading.Thread(target=generate, args=(20,)) for _ in range(2)]
        for thread in pair:
            thread.start()
        for thread in pair:
            thread.join()

        order: list[tuple[str, str]] = []
        lock = threading.Lock()

        def stream(name: str) -> None:
            body = {"inputs": COUNTING, "parameters": {"max_new_tokens": 300}}
            with requests.post(
                server.url + "/generate_stream", json=body, stream=True, timeout=timeout_s - 10
            ) as response:
                first = True
                for line in response.iter_lines():
                    if line.startswith(b"data:") and first:
                        with lock:
                            order.append((name, "first"))
                        first = False
            with lock:
                order.append((name, "end"))

        streams = [threading.Thread(target=stream, args=(name,)) for name in "XY"]
        for thread in streams:
            thread.start()
        for thread in streams:
            thread.join()
    events = [event for _, event in order]
    assert events[:2] == ["first", "first"], f"the two streams did not decode at once: {order}"

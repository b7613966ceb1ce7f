"""The openai backend's lean HTTP client (backends/openai_http.py) over real sockets, against the
scripted server of tests/openai_wire.py: kept-alive connections, each way of framing a body,
and every failure worded as the openai SDK's path words it — the same server answers both
paths in one test (the SDK's requests come through it as through a proxy: HTTP_PROXY set)."""

from __future__ import annotations

import dataclasses
import re
import sys
import threading

import pytest

from falconchat.backends import openai_http
from falconchat.backends.openai import OpenAIBackend
from falconchat.config_models import ModelSpec
from falconchat.errors import AuthRejected, EndpointError, Overloaded, Rejected, Timeout, Unreachable
from falconchat.types import Done, SamplingParams, TextDelta
from openai_wire import (
    WireServer,
    chunked,
    closing_after,
    completion,
    cut,
    dribbled,
    error_event,
    hang,
    reply,
    sized,
    slow,
    status,
    to_the_close,
)
from tgi_endpoint import refused_url

pytestmark = pytest.mark.process  # starts servers (threads on real sockets)

openai = pytest.importorskip("openai")

KEY = "sk-wire-test-key"
PARAMS = SamplingParams(temperature=0, max_new_tokens=8)
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
PROXY_VARIABLES += ("NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """No proxy from the machine's variables: each test sets its own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def sdk_out_of_reach(monkeypatch):
    """The openai package cannot be imported until a test lets the SDK's path run
    (`sdk_back`): the lean client needs nothing of it (importing it costs a process ~0.6 s)."""
    monkeypatch.setitem(sys.modules, "openai", None)


def sdk_back(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", openai)


def backend(url: str, timeout: float = 10.0) -> OpenAIBackend:
    return OpenAIBackend(
        ModelSpec(
            name="wire-model",
            backend="openai",
            endpoint=f"{url}/v1",
            api_key=KEY,
            format="chat",
            timeout=timeout,
            headers=(("X-Team", "falcon"),),
        )
    )


def ask(model: OpenAIBackend) -> tuple[str, Done]:
    events = list(model.stream_messages([{"role": "user", "content": "hi"}], PARAMS))
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def failure(model: OpenAIBackend) -> tuple[list[str], EndpointError]:
    """The texts that arrived before the stream failed, and its error."""
    arrived: list[str] = []
    with pytest.raises(EndpointError) as caught:
        for event in model.stream_messages([{"role": "user", "content": "hi"}], PARAMS):
            if isinstance(event, TextDelta):
                arrived.append(event.text)
    return arrived, caught.value


def on_both_paths(server: WireServer, monkeypatch, run, timeout: float = 10.0):
    """`run(backend)` on the lean client, then on the SDK (through the server as a proxy)."""
    lean = backend(server.url, timeout)
    try:
        first = run(lean)
    finally:
        lean.close()
    monkeypatch.setenv("HTTP_PROXY", server.url)
    sdk_back(monkeypatch)
    sdk = backend(server.url, timeout)
    try:
        second = run(sdk)
    finally:
        sdk.close()
    return first, second


# ---- keep-alive and framing ------------------------------------------------------------------


@pytest.mark.parametrize("framing", [chunked, sized, dribbled], ids=["chunked", "content-length", "dribbled"])
def test_sequential_requests_share_one_connection(framing):
    """Eight requests one after another, from two backends of the same server (as batch's
    workers are): one connection carries them all, each reply whole."""
    with WireServer(framing(reply("Hel", "lo", " world"))) as server:
        first, second = backend(server.url), backend(server.url)
        try:
            for model in (first, second) * 4:
                text, done = ask(model)
                assert text == "Hello world" and done.finish_reason == "stop"
        finally:
            first.close()
            second.close()
        assert len(server.made(proxied=False)) == 8
        assert server.connections == 1


def test_a_body_read_to_the_close_is_whole_and_its_connection_not_kept():
    with WireServer(to_the_close(reply("Hel", "lo"))) as server:
        model = backend(server.url)
        try:
            assert [ask(model)[0] for _ in range(3)] == ["Hello"] * 3
        finally:
            model.close()
        assert server.connections == 3


def test_a_kept_connection_the_server_closed_meanwhile_is_replaced_at_once():
    """The server closes each connection after its response, without saying so (as an idle
    keep-alive timeout does): the next request finds its kept connection dead and goes on a
    new one, sent once — no failure, no retry."""
    with WireServer(closing_after(chunked(reply("ok")))) as server:
        model = backend(server.url)
        try:
            assert [ask(model)[0] for _ in range(4)] == ["ok"] * 4
        finally:
            model.close()
        assert len(server.requests) == 4 and server.connections == 4


def test_worker_threads_share_the_connections_safely():
    """Four threads, a backend each (batch's workers), five requests each: every reply whole,
    and no more connections than requests at once."""
    with WireServer(chunked(reply("a", "b", "c"))) as server:
        texts: list[str] = []
        lock = threading.Lock()

        def work() -> None:
            model = backend(server.url)
            try:
                for _ in range(5):
                    text, _done = ask(model)
                    with lock:
                        texts.append(text)
            finally:
                model.close()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert texts == ["abc"] * 20
        assert server.connections <= 4


def test_closing_a_stream_early_closes_its_connection():
    """A closed stream (Ctrl-C, a cancelled item) closes the connection, which is how the server
    learns to stop; it is not put back half read."""
    with WireServer(slow(reply(*"abcdefghij"), delay_s=0.05)) as server:
        model = backend(server.url)
        try:
            stream = model.stream_messages([{"role": "user", "content": "hi"}], PARAMS)
            assert next(stream).text == "a"
            stream.close()
            text, _done = ask(model)
        finally:
            model.close()
        assert text == "abcdefghij"
        assert server.connections == 2


def test_the_request_is_the_sdks(monkeypatch):
    """The same path, body and credentials on both paths (headers of the entry included)."""
    with WireServer(chunked(reply("ok"))) as server:
        on_both_paths(server, monkeypatch, ask)
        (lean,), (sdk,) = server.made(proxied=False), server.made(proxied=True)
        assert lean.path == sdk.path == "/v1/chat/completions"
        assert lean.body == sdk.body and lean.body["stream"] is True
        for name in ("authorization", "x-team", "content-type", "accept"):
            assert lean.headers[name] == sdk.headers[name], name
        assert lean.headers["authorization"] == f"Bearer {KEY}"


def test_the_completions_api_with_logprobs_gives_the_same_events_as_the_sdk_path(monkeypatch):
    """`format = "falcon"`: the completions API, its logprobs in that API's shape; the events
    (text, finish, logprobs) are the same on both paths."""

    def run(model: OpenAIBackend) -> list:
        falcon = OpenAIBackend(dataclasses.replace(model.spec, format="falcon"))
        try:
            events = list(falcon.stream("User: count\nAssistant:", PARAMS.with_changes(logprobs=1)))
        finally:
            falcon.close()
        done = events[-1]
        assert isinstance(done, Done)
        texts = [e.text for e in events if isinstance(e, TextDelta)]
        return [texts, done.finish_reason, done.completion_tokens, done.logprobs]

    with WireServer(chunked(completion("one", ",", " two"))) as server:
        lean, sdk = on_both_paths(server, monkeypatch, run)
        assert lean == sdk
        assert "".join(lean[0]) == "one, two" and lean[1] == "length"
        assert [entry["token"] for entry in lean[3]] == ["one", ",", " two"]
        assert [r.path for r in server.requests] == ["/v1/completions"] * 2


# ---- failures, worded as the SDK's path words them -----------------------------------------

EXPECTED = {  # status: (class, tries: 1 + the SDK's 2 retries where it retries)
    400: (Rejected, 1),
    401: (AuthRejected, 1),
    403: (AuthRejected, 1),
    404: (Rejected, 1),
    408: (EndpointError, 3),
    409: (EndpointError, 3),
    413: (Rejected, 1),
    422: (Rejected, 1),
    429: (Overloaded, 3),
    500: (EndpointError, 3),
    502: (EndpointError, 3),
    503: (Overloaded, 3),
}


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_each_status_is_the_same_error_as_on_the_sdk_path(code, monkeypatch):
    """An OpenAI API error body (its message echoing our key, which is never shown): the same
    class, exit code and words on both paths, after the same number of tries."""
    with WireServer(status(code, f"no, with key {KEY}")) as server:
        lean, sdk = on_both_paths(server, monkeypatch, lambda model: failure(model)[1])
        cls, tries = EXPECTED[code]
        assert type(lean) is type(sdk) is cls
        assert lean.message == sdk.message and lean.exit_code == sdk.exit_code
        assert f"HTTP {code}" in lean.message and KEY not in lean.message
        if code not in (401, 403, 503):
            assert "no, with key ***" in lean.message  # the server's words, its echo of the key masked
        assert len(server.made(proxied=False)) == len(server.made(proxied=True)) == tries


@pytest.mark.parametrize(
    ("code", "headers"),
    [(500, "x-should-retry: false"), (400, "x-should-retry: true\nretry-after-ms: 10"), (429, "retry-after: 121")],
    ids=["told-not-to", "told-to", "retry-after-too-long"],
)
def test_the_retry_rules_are_the_sdks(code, headers, monkeypatch):
    """What the server says of retrying (x-should-retry; a Retry-After over 120 s is not waited
    for) is obeyed alike on both paths."""
    with WireServer(status(code, "busy", headers)) as server:
        lean, sdk = on_both_paths(server, monkeypatch, lambda model: failure(model)[1])
        assert lean.message == sdk.message and type(lean) is type(sdk)
        tries = 3 if "true" in headers else 1
        assert len(server.made(proxied=False)) == len(server.made(proxied=True)) == tries


def test_nothing_listening_is_unreachable():
    url = refused_url()
    _arrived, error = failure(backend(url))
    assert type(error) is Unreachable and error.exit_code == 3
    assert error.message == f"cannot reach {url}/v1; check the URL and that the server is running"


def test_a_server_that_never_answers_times_out_after_the_retries(monkeypatch):
    with WireServer(hang) as server:
        lean, sdk = on_both_paths(server, monkeypatch, lambda model: failure(model)[1], timeout=0.3)
        assert type(lean) is type(sdk) is Timeout
        said = re.compile(
            re.escape(f"{server.url}/v1 sent no answer within 0.3s a try (")
            + r"\d+s in all, with retries\); try again or raise --timeout"
        )
        assert said.fullmatch(lean.message) and said.fullmatch(sdk.message), (lean.message, sdk.message)
        assert len(server.made(proxied=False)) == len(server.made(proxied=True)) == 3


def test_a_stream_cut_midway_keeps_what_arrived(monkeypatch):
    with WireServer(cut(reply("Hel", "lo")[:2])) as server:
        lean, sdk = on_both_paths(server, monkeypatch, failure)
        assert lean[0] == sdk[0] == ["Hel", "lo"]
        assert type(lean[1]) is type(sdk[1]) is EndpointError and lean[1].message == sdk[1].message
        assert lean[1].message == f"the connection to {server.url}/v1 broke; the reply is incomplete"
        assert len(server.requests) == 2  # a stream that started is not retried


def test_an_error_event_midway_is_an_endpoint_error(monkeypatch):
    with WireServer(error_event(reply("Hel")[:1], f"out of memory\n(key {KEY})")) as server:
        lean, sdk = on_both_paths(server, monkeypatch, failure)
        assert lean[0] == sdk[0] == ["Hel"]
        assert type(lean[1]) is type(sdk[1]) is EndpointError and lean[1].message == sdk[1].message
        assert lean[1].message == f"{server.url}/v1 sent something unexpected: out of memory (key ***)"


# ---- which path ------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_variable_sends_the_requests_through_the_sdk(variable, monkeypatch):
    """With a proxy set, the request goes to the proxy (the SDK's path: httpx knows proxies):
    the endpoint itself has nothing listening."""
    with WireServer(chunked(reply("via", " proxy"))) as proxy:
        monkeypatch.setenv(variable, proxy.url)
        sdk_back(monkeypatch)
        model = backend(refused_url())
        try:
            assert ask(model)[0] == "via proxy"
        finally:
            model.close()
        assert [r.proxied for r in proxy.requests] == [True]


def test_no_proxy_naming_the_host_keeps_the_lean_client(monkeypatch):
    with WireServer(chunked(reply("direct"))) as server:
        monkeypatch.setenv("HTTP_PROXY", refused_url())
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        model = backend(server.url)
        try:
            assert ask(model)[0] == "direct"
        finally:
            model.close()
        assert [r.proxied for r in server.requests] == [False]


def test_which_endpoints_the_lean_client_takes(monkeypatch):
    assert openai_http.usable("http://gpu1:8000/v1", KEY, {"X-Team": "falcon"})
    assert not openai_http.usable("https://api.example.com/v1", KEY, {})  # TLS: the SDK's
    assert not openai_http.usable("http://user:pw@gpu1:8000/v1", KEY, {})
    assert not openai_http.usable("http://gpu1:8000/v1?tenant=a", KEY, {})
    assert not openai_http.usable("http://gpu1:8000/vé 1", KEY, {})
    assert not openai_http.usable("http://gpu1:99999/v1", KEY, {})
    assert not openai_http.usable("http://gpu1:8000/v1", KEY, {"X-Bad": "one\r\nInjected: two"})
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example.com:3128")
    assert not openai_http.usable("http://gpu1:8000/v1", KEY, {})
    monkeypatch.setenv("NO_PROXY", "gpu1")
    assert openai_http.usable("http://gpu1:8000/v1", KEY, {})


def stalled_after(events: list[bytes], gap_s: float):
    """A chunked stream that sends `events` `gap_s` apart, then nothing (it stalls mid-reply)."""

    def answer(conn, request, stop) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in events:
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            if stop.wait(gap_s):
                return False
        stop.wait(30)
        return False

    return answer


def test_a_stream_that_stalls_midway_times_out_once_with_what_arrived_kept(monkeypatch):
    """A reply that stops coming after two pieces, each within the timeout: one Timeout after one
    wait (a started reply is never tried again), worded as one wait — the whole time since the
    request (1.3 s) is no try's — and the pieces that arrived kept."""
    with WireServer(stalled_after(reply("Hel", "lo")[:2], gap_s=0.4)) as server:
        lean, sdk = on_both_paths(server, monkeypatch, failure, timeout=0.5)
        for arrived, error in (lean, sdk):
            assert arrived == ["Hel", "lo"]
            assert type(error) is Timeout, error
            assert error.message == f"{server.url}/v1 sent no answer within 0.5s; try again or raise --timeout"
        assert len(server.requests) == 2  # one a path

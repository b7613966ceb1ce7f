"""Endpoint faults, against the scripted TGI endpoint and a real `falconchat serve`.

Each ends in one line on stderr naming the endpoint and what to do, with the
documented exit code, within the configured timeout plus one second (measured
after the process's own start-up, which a run against a refused port gives); in
the REPL the partial reply is kept and the next message works.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time

import pytest
from kit import CANARY_SERVE_KEY, Ran, Terminal, no_leaks, no_traceback, one_error_line, popen, run
from serve_process import ServeProcess, running

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

TIMEOUT = 2  # --timeout for the scenarios that wait
ADVICE = ("check", "try again", "raise --timeout", "is it up?")


def malformed_sse(reply) -> None:
    """A token, then an event that is not JSON."""
    reply.start_stream()
    reply.token(" Bad")
    data = b"data:{not json at all\n\n"
    reply._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    reply.end_stream()


# (id, how the endpoint misbehaves, exit code, words the error line must hold)
FAULTS = [
    ("401", lambda ep: ep.error(401, "Authorization header is invalid"), 4, "HF_API_KEY"),
    ("403", lambda ep: ep.error(403, "Forbidden"), 4, "HF_API_KEY"),
    ("404", lambda ep: ep.page(404, "Not Found", "text/plain"), 5, "check the endpoint URL"),
    (
        "422",
        lambda ep: ep.error(422, "Input validation error: `temperature` must be strictly positive", "validation"),
        5,
        "`temperature` must be strictly positive",
    ),
    (
        "429 with Retry-After",
        lambda ep: ep.error(429, "Rate limit reached", "overloaded", retry_after="0"),
        6,
        "overloaded",
    ),
    ("500", lambda ep: ep.error(500, "CUDA out of memory"), 1, "HTTP 500"),
    ("503", lambda ep: ep.error(503, "Model is loading", "overloaded", retry_after="0"), 6, "overloaded"),
    (
        "HTML error page",
        lambda ep: ep.page(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        3,
        "not a TGI answer",
    ),
    (
        "HTML page with 200",
        lambda ep: ep.page(200, "<html><body>Sign in to continue</body></html>"),
        1,
        "not a TGI answer",
    ),
    ("malformed SSE", lambda ep: ep.script(malformed_sse), 1, "malformed event"),
    ("stream cut before its details", lambda ep: ep.cut([" Half", " a"], abrupt=False), 1, "ended the stream"),
    ("connection dropped mid-body", lambda ep: ep.cut([" Half", " a"]), 1, "connection to"),
    (
        "error event mid-stream",
        lambda ep: ep.error_event([" Half"], "Request failed during generation"),
        1,
        "failed to generate",
    ),
]


def assert_reported(result, url: str, code: int, words: str) -> str:
    assert result.code == code, (result.code, result.err)
    line = one_error_line(result.err, url, words)
    assert any(advice in line for advice in ADVICE), f"no advice on what to do: {line}"
    assert "<html" not in line and "<h1>" not in line
    return line


@pytest.mark.parametrize("fault, code, words", [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_an_endpoint_fault_is_one_line_with_its_exit_code(home, tgi_endpoint, fault, code, words):
    fault(tgi_endpoint)
    result = run(home, "ask", "--timeout", str(TIMEOUT), "--endpoint", tgi_endpoint.url, "hi")
    assert_reported(result, tgi_endpoint.url, code, words)
    no_traceback(result.out)
    assert result.out in ("", "Half a\n", "Half\n", "Bad\n"), result.out  # what arrived is kept, nothing else


def test_429_without_retry_after_is_retried_with_backoff_then_reported(home, tgi_endpoint):
    tgi_endpoint.error(429, "Model is overloaded", "overloaded")
    result = run(home, "ask", "--timeout", "10", "--endpoint", tgi_endpoint.url, "hi")
    assert_reported(result, tgi_endpoint.url, 6, "overloaded")
    times = [r.at for r in tgi_endpoint.requests]
    assert len(times) == 4  # the first try and three retries
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(times))  # backed off (0.5 s, 1 s, 2 s ± 20 %)


def test_retry_after_is_honoured(home, tgi_endpoint):
    tgi_endpoint.error(429, "Rate limit reached", "overloaded", retry_after="1")
    result = run(home, "ask", "--timeout", "10", "--endpoint", tgi_endpoint.url, "hi")
    assert_reported(result, tgi_endpoint.url, 6, "overloaded")
    times = [r.at for r in tgi_endpoint.requests]
    assert len(times) == 4 and all(b - a >= 0.75 for a, b in itertools.pairwise(times))


def test_refused_connection(home, closed_port_url):
    result = run(home, "ask", "--endpoint", closed_port_url, "hi")
    assert_reported(result, closed_port_url, 3, "connection refused")


def test_dns_failure(home):
    url = "http://falconchat-reliability.invalid:8080"  # .invalid never resolves (RFC 2606)
    result = run(home, "ask", "--timeout", str(TIMEOUT), "--endpoint", url, "hi")
    assert_reported(result, url, 3, "does not resolve")


# ---- the ones that wait: within the timeout plus one second ---------------------------------


@pytest.fixture
def start_up_s(home, closed_port_url) -> float:
    """How long a falconchat that fails at once takes here, now: the process's own cost."""
    return run(home, "ask", "--endpoint", closed_port_url, "hi").seconds


@contextlib.contextmanager
def unaccepting_port():
    """A port whose accept queue is full: a new connection's SYN goes unanswered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in (*fillers, server):
            sock.close()


def test_connect_timeout(home, start_up_s):
    with unaccepting_port() as url:
        result = run(home, "ask", "--timeout", str(TIMEOUT), "--endpoint", url, "hi")
    assert_reported(result, url, 3, "did not accept a connection")
    assert result.seconds - start_up_s <= TIMEOUT + 1, (result.seconds, start_up_s)


def test_no_first_token(home, tgi_endpoint, start_up_s):
    tgi_endpoint.hang()
    result = run(home, "ask", "--timeout", str(TIMEOUT), "--endpoint", tgi_endpoint.url, "hi")
    assert_reported(result, tgi_endpoint.url, 3, f"sent no answer within {TIMEOUT}s")
    assert result.seconds - start_up_s <= TIMEOUT + 1, (result.seconds, start_up_s)


def test_a_stall_mid_reply_keeps_what_arrived(home, tgi_endpoint, start_up_s):
    tgi_endpoint.stall([" Half", " way"])
    result = run(home, "ask", "--timeout", str(TIMEOUT), "--endpoint", tgi_endpoint.url, "hi")
    assert_reported(result, tgi_endpoint.url, 3, f"stopped sending for {TIMEOUT}s")
    assert result.out == "Half way\n"
    assert result.seconds - start_up_s <= TIMEOUT + 1, (result.seconds, start_up_s)


def test_retries_never_wait_past_the_timeout(home, tgi_endpoint, start_up_s):
    tgi_endpoint.error(503, "Model is loading", "overloaded", retry_after="1")
    result = run(home, "ask", "--timeout", str(TIMEOUT), "--endpoint", tgi_endpoint.url, "hi")
    assert_reported(result, tgi_endpoint.url, 6, "overloaded")
    assert result.seconds - start_up_s <= TIMEOUT + 1, (result.seconds, start_up_s)


# ---- in the REPL: the partial reply is kept and the next message works ----------------------


def test_the_repl_keeps_partial_replies_and_goes_on(home, tgi_endpoint):
    faults = [
        ("stall", lambda ep: ep.stall([" Stalled", " half"]), "Stalled half", "stopped sending"),
        ("cut", lambda ep: ep.cut([" Cut", " short"]), "Cut short", "incomplete"),
        ("malformed", lambda ep: ep.script(malformed_sse), "Bad", "malformed event"),
        ("500", lambda ep: ep.error(500, "boom"), "", "HTTP 500"),
        ("401", lambda ep: ep.error(401, "bad token"), "", "HF_API_KEY"),
    ]
    for i, (_, fault, _, _) in enumerate(faults):
        fault(tgi_endpoint)
        tgi_endpoint.stream([" Fine", f" {i}"], "eos_token")
    term = Terminal(home, "--timeout", str(TIMEOUT), "--endpoint", tgi_endpoint.url)
    try:
        term.prompt()
        for i, (name, _, partial, words) in enumerate(faults):
            shown = term.say(f"fault {name}")
            assert words in shown and partial in shown, (name, shown)
            assert f"Fine {i}" in term.say(f"after {name}"), name
        history = term.say("/history")
        term.child.sendcontrol("d")
        assert term.finish() == 0
    finally:
        term.close()
    for name, _, partial, _ in faults:
        assert f"You: after {name}" in history
        if partial:
            assert f"You: fault {name}" in history and partial in history, (name, history)
        else:  # no reply at all: not kept, not sent again as context (issue 15, item 4)
            assert f"You: fault {name}" not in history, (name, history)
    no_traceback(term.screen)
    no_leaks(term.screen)


# ---- against a real `falconchat serve` --------------------------------------------------------


@pytest.fixture(scope="module")
def server(serve_home):
    with running(serve_home, "--api-key", CANARY_SERVE_KEY) as process:
        yield process


def test_serve_with_a_wrong_key(home, server):
    result = run(home, "ask", "--endpoint", server.url, "hi", env={"HF_API_KEY": "wrong-key"})
    assert_reported(result, server.url, 4, "HF_API_KEY")


def test_serve_refusing_the_request(home, server):
    # Three stop sequences of the user's and the prompt format's two: more than the server takes.
    result = run(
        home,
        "ask",
        "--stop",
        "A",
        "--stop",
        "B",
        "--stop",
        "C",
        "--endpoint",
        server.url,
        "hi",
        env={"HF_API_KEY": CANARY_SERVE_KEY},
    )
    assert_reported(result, server.url, 5, "stop")


def test_serve_gone_mid_reply(home, serve_home):
    """The server dies while it streams: the part that arrived is kept, one line, exit 1."""
    doomed = ServeProcess(serve_home / "doomed")
    try:
        proc = popen(
            home,
            "ask",
            "-t",
            "0",
            "--max-new-tokens",
            "400",
            "--endpoint",
            doomed.url,
            "Count from one to two hundred.",
        )
        first = proc.stdout.read(8)
    finally:
        doomed.kill()
    rest, err = proc.communicate(timeout=30)
    assert len(first) == 8 and (first + rest).endswith(b"\n")
    assert_reported(Ran(proc.returncode, "", err.decode(), 0.0), doomed.url, 1, "incomplete")

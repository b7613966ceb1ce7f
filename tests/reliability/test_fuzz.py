"""Fuzzing: hypothesis over sanitize(), the prompt format and the session loader; a
seeded fuzz pass over `serve`'s routes (random methods, paths, headers and bodies:
never a 5xx, never a hang, healthy afterwards).

Example counts are modest so the module runs in seconds; raise them with
`--hypothesis-seed`/profiles when hunting.
"""

from __future__ import annotations

import json
import random
import re
import socket

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kit import no_traceback, tally
from serve_process import running

from falconchat.conversation import Conversation
from falconchat.errors import InputError
from falconchat.prompt import FALCON_STOPS, PromptTooLong, clean_reply, falcon_prompt, fit_prompt
from falconchat.sessions import Session, load, save
from falconchat.text import StreamSanitizer, sanitize
from falconchat.types import Done, SamplingParams, TextDelta, Turn

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# Text rich in the characters escape sequences are made of, and in ordinary ones.
terminal_text = st.text(
    alphabet=st.sampled_from(
        list("\x1b\x07\x9b\x9c\x9d\x90\\[];?0123456789PX^_ mAJHa\n\t\r\x00\x7f\u202e\u2066éß中🎉")
    ),
    max_size=60,
) | st.text(max_size=60)


# ---- sanitize() -----------------------------------------------------------------------------


@FAST
@given(terminal_text)
def test_sanitize_leaves_no_control_and_is_idempotent(text):
    clean = sanitize(text)
    assert not UNSAFE.search(clean), repr(clean)
    assert sanitize(clean) == clean


@FAST
@given(
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cc", "Cs"),
            blacklist_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
        ),
        max_size=80,
    )
)
def test_sanitize_keeps_text_without_controls(text):
    assert sanitize(text) == text


@FAST
@given(terminal_text, st.lists(st.integers(0, 60), max_size=6))
@example("\x1b ", [])  # an escape unfinished at the end: the stream dropped it, sanitize kept its " "
@example("a\x1b !", [1])
@example("\x9b0\x90", [])  # a CSI cut short by a DCS: the stream dropped its "0", sanitize kept it
@example("\x1b \x90", [])  # an escape cut short the same way
def test_a_stream_split_anywhere_cleans_like_the_whole(text, cuts):
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]
    stream = StreamSanitizer()
    assert "".join(stream.feed(p) for p in pieces) + stream.flush() == sanitize(text)


# ---- the prompt format ----------------------------------------------------------------------------

words = st.text(alphabet=st.sampled_from(list("abc XYZ\n:<|>")), max_size=30)
turns = st.lists(st.builds(Turn, user=words, assistant=words), max_size=6)


@FAST
@given(words, turns, words)
def test_the_falcon_prompt_shape(system, history, message):
    prompt = falcon_prompt(system, history, message)
    assert prompt.endswith(f"User: {message}\nAssistant:")
    assert prompt.startswith(f"System:{system}\n") if system else prompt.startswith("User: ")


@FAST
@given(words, turns, words, st.integers(1, 120))
def test_fitting_keeps_the_newest_turns_within_the_budget(system, history, message, budget):
    count = len  # a token per character: simple and exact
    try:
        fitted = fit_prompt(system, history, message, count, budget)
    except PromptTooLong:
        assert count(falcon_prompt(system, [], message)) > budget
        return
    assert count(fitted.text) == fitted.prompt_tokens <= budget
    assert fitted.text == falcon_prompt(system, history[fitted.dropped_turns :], message)  # the oldest go first


@FAST
@given(
    st.text(alphabet=st.sampled_from(list("ab \nUser:<|endoftext>")), max_size=50),
    st.lists(st.integers(0, 50), max_size=8),
    st.booleans(),
)
def test_a_stop_sequence_is_never_shown_however_the_tokens_split(reply, cuts, drop_leading_space):
    points = sorted({min(c, len(reply)) for c in cuts})
    tokens = [reply[a:b] for a, b in zip([0, *points], [*points, len(reply)])]
    events = (e for e in [*(TextDelta(t) for t in tokens), Done("length")])  # a stream: closable
    shown = "".join(
        e.text
        for e in clean_reply(events, FALCON_STOPS, drop_leading_space=drop_leading_space)
        if isinstance(e, TextDelta)
    )
    # Up to the first stop sequence; then a fresh reply starts at its first visible character:
    # leading blank lines go, or (with none) the separator space after "Assistant:" when asked.
    stops = [i for i in (reply.find(s) for s in FALCON_STOPS) if i >= 0]
    body = reply[: min(stops)] if stops else reply
    if not body.strip():
        body = ""
    elif re.match(r"\s*\n", body):
        body = body[re.match(r"[ \n]*\n", body).end() :]
    elif drop_leading_space and body.startswith(" "):
        body = body[1:]
    assert shown == body


# ---- the session loader ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
turn_docs = st.fixed_dictionaries(
    {"user": json_values, "assistant": json_values, "status": st.sampled_from(["complete", "cut", "error", "other", 1])}
)
session_docs = st.fixed_dictionaries(
    {"format": st.sampled_from(["falconchat-session", "other"]), "version": st.sampled_from([1, 2, "1", 1.0, True])},
    optional={
        "model": json_values,
        "system": json_values,
        "params": json_values
        | st.dictionaries(
            st.sampled_from(["temperature", "max_new_tokens", "top_p", "top_k", "seed", "stop"]), json_values
        ),
        "turns": st.lists(turn_docs, max_size=3) | json_values,
    },
)


def loads_or_refuses(path) -> None:
    try:
        assert isinstance(load(path), Session)
    except InputError:
        pass  # refused, with a message: fine; anything else escapes and fails


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session_docs | json_values)
def test_any_json_document_loads_or_is_refused(tmp_path, document):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(document))
    loads_or_refuses(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_load_or_are_refused(tmp_path, data):
    path = tmp_path / "s.json"
    path.write_bytes(b'{"format": "falconchat-session", "version": 1, ' + data)
    loads_or_refuses(path)


safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    safe_text,
    st.lists(
        st.builds(Turn, user=safe_text, assistant=safe_text, status=st.sampled_from(["complete", "cut", "error"])),
        max_size=4,
    ),
)
def test_a_saved_session_loads_back_the_same(tmp_path, system, history):
    path = tmp_path / "s.json"
    save(path, Session(Conversation(system=system, turns=history), "smollm2", SamplingParams()))
    assert not UNSAFE.search(path.read_text(encoding="utf-8").replace("\n", "").replace("\t", ""))  # cat-safe
    loaded = load(path)
    assert loaded.conversation.system == system and loaded.conversation.turns == history


# ---- serve's routes -----------------------------------------------------------------------------------

REQUESTS = 250
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW", "get"]
PATHS = [
    "/",
    "/generate",
    "/generate_stream",
    "/info",
    "/health",
    "/tokenize",
    "/metrics",
    "/docs",
    "//generate",
    "/generate/",
    "/generate?stream=true",
    "/%00",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/ünï",
    "/" + "a" * 3000,
    "/info;x",
    "*",
]
EDGE = [None, -1, 0, 1, 2, 3, 0.5, 1.5, -0.0, 1e308, 10**30, "2", "", True, [], {}, [1], {"a": 1}, "\x1b[2J"]


def fuzz_body(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.15:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
    if kind < 0.25:
        return rng.choice([b"", b"{", b"null", b"[]", b'{"inputs": NaN}', b'{"inputs": "hi"' * 3, b"\xff\xfe{}"])
    parameters = {
        key: rng.choice(EDGE)
        for key in rng.sample(
            [
                "temperature",
                "top_p",
                "top_k",
                "repetition_penalty",
                "seed",
                "stop",
                "details",
                "do_sample",
                "truncate",
                "return_full_text",
                "decoder_input_details",
                "typical_p",
                "watermark",
                "best_of",
                "grammar",
            ],
            rng.randint(0, 5),
        )
    }
    parameters["max_new_tokens"] = rng.choice([1, 2, 3, 0, -1, "3", 2.5, None, 10**30, True])  # short when valid
    body = {
        "inputs": rng.choice(
            [
                "Hi",
                "",
                3,
                None,
                ["x"],
                "\x00\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
                "User: hello\nAssistant:",
                "é" * 50,
            ]
        ),
        "parameters": parameters if rng.random() < 0.9 else rng.choice(EDGE),
        "stream": rng.choice([True, False, None, "yes"]),
    }
    if rng.random() < 0.2:
        body.pop(rng.choice(list(body)))
    return json.dumps(body).encode()


def exchange(host: str, port: int, raw: bytes, timeout: float = 30.0) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def server(serve_home):
    with running(serve_home) as process:
        yield process


def test_serve_routes_never_answer_5xx_or_hang(server):
    host, port = server.url.removeprefix("http://").split(":")
    rng = random.Random(20240808)
    statuses = []
    for n in range(REQUESTS):
        method, path, body = rng.choice(METHODS), rng.choice(PATHS), fuzz_body(rng)
        headers = [f"Host: {host}", "Connection: close"]
        if rng.random() < 0.8:
            headers.append(
                f"Content-Type: {rng.choice(['application/json', 'text/plain', 'application/json; charset=latin-1', '', 'multipart/form-data; boundary=x'])}"
            )
        if rng.random() < 0.9:
            headers.append(f"Content-Length: {len(body)}")
        if rng.random() < 0.1:
            headers.append(
                rng.choice(
                    ["Authorization: Bearer x", "Transfer-Encoding: gzip", "Expect: 100-continue", "Accept: */*\x7f"]
                )
            )
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
        raw = head.encode() + body
        answer = exchange(host, int(port), raw)
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), (n, raw[:200], answer[:200])
        status = int(status_line.split()[1])
        statuses.append(status)
        assert status < 500, (n, raw[:300], answer[:500])
        tally["fuzzed_requests"] += 1
    assert exchange(
        host, int(port), f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    ).startswith(b"HTTP/1.1 200")
    assert len(set(statuses)) > 3  # the fuzz reached more than one kind of answer
    no_traceback(server.log)

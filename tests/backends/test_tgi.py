"""TgiBackend against a scripted TGI endpoint over real sockets (tests/tgi_endpoint.py)."""

from __future__ import annotations

import itertools
import re
import time

import pytest

import falconchat.backends.tgi as tgi
from falconchat.backends.tgi import TgiBackend
from falconchat.config_models import ModelSpec
from falconchat.errors import (
    AuthRejected,
    EndpointError,
    FalconchatError,
    Overloaded,
    Rejected,
    Timeout,
    Unreachable,
)
from falconchat.prompt import falcon_prompt
from falconchat.types import Done, SamplingParams, TextDelta

KEY = "secret-key"
PROMPT = falcon_prompt("You are helpful.", [], "Hi")
PARAMS = SamplingParams(temperature=0.7, max_new_tokens=64)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(tgi, "BACKOFF_S", 0.001)


def backend_for(
    url: str, *, timeout: float = 5.0, api_key: str | None = KEY, auth_scheme: str = "Bearer"
) -> TgiBackend:
    spec = ModelSpec(name="tgi", backend="tgi", endpoint=url, api_key=api_key, auth_scheme=auth_scheme, timeout=timeout)
    return TgiBackend(spec)


def collect(url: str, params: SamplingParams = PARAMS, **spec) -> tuple[list, FalconchatError | None]:
    """Every event until the stream ends or raises, and what it raised."""
    backend = backend_for(url, **spec)
    events: list = []
    try:
        for event in backend.stream(PROMPT, params):
            events.append(event)
    except FalconchatError as exc:
        return events, exc
    finally:
        backend.close()
    return events, None


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def assert_one_done_last(events: list) -> Done:
    assert [type(e) for e in events[:-1]] == [TextDelta] * (len(events) - 1)
    assert isinstance(events[-1], Done)
    return events[-1]


# ---- a normal reply ----------------------------------------------------------------------


def test_a_stream_yields_text_deltas_then_one_done(tgi_endpoint):
    tgi_endpoint.stream([" Hello", " world", "!"], finish_reason="length")
    events, error = collect(tgi_endpoint.url)
    assert error is None
    done = assert_one_done_last(events)
    assert [e.text for e in events[:-1]] == ["Hello", " world", "!"]  # the first token's space dropped
    assert done.finish_reason == "length"
    assert done.completion_tokens == 3


def test_the_request_carries_the_prompt_stops_and_explicit_limits(tgi_endpoint):
    tgi_endpoint.stream([" Hi"])
    collect(tgi_endpoint.url)
    [request] = tgi_endpoint.requests
    assert request.method == "POST"
    assert request.path == "/"
    body = request.body
    assert body["inputs"] == "System:You are helpful.\nUser: Hi\nAssistant:"
    assert body["stream"] is True
    parameters = body["parameters"]
    assert "\nUser:" in parameters["stop"] and "<|endoftext|>" in parameters["stop"]
    assert parameters["max_new_tokens"] == 64  # explicit: the client's own default is 20
    assert parameters["details"] is True
    assert parameters["do_sample"] is True
    assert parameters["temperature"] == 0.7
    assert request.headers["authorization"] == "Bearer secret-key"
    assert request.headers["content-type"] == "application/json"


def test_the_auth_scheme_is_configurable(tgi_endpoint):
    tgi_endpoint.stream([" Hi"])
    collect(tgi_endpoint.url, auth_scheme="Basic")
    assert tgi_endpoint.requests[0].headers["authorization"] == "Basic secret-key"


def test_no_key_sends_no_authorization_header(tgi_endpoint):
    tgi_endpoint.stream([" Hi"])
    collect(tgi_endpoint.url, api_key=None)
    assert "authorization" not in tgi_endpoint.requests[0].headers


def test_extra_stop_sequences_are_sent_after_the_formats_own(tgi_endpoint):
    tgi_endpoint.stream([" Hi"])
    collect(tgi_endpoint.url, PARAMS.with_changes(stop=("###",)))
    assert tgi_endpoint.requests[0].body["parameters"]["stop"] == ["\nUser:", "<|endoftext|>", "###"]


def test_temperature_zero_is_greedy(tgi_endpoint):
    tgi_endpoint.stream([" Hi"])
    collect(tgi_endpoint.url, PARAMS.with_changes(temperature=0.0))
    parameters = tgi_endpoint.requests[0].body["parameters"]
    assert parameters["do_sample"] is False
    assert "temperature" not in parameters
    assert "top_p" not in parameters and "top_k" not in parameters


# ---- stop text is cut client-side ---------------------------------------------------------


@pytest.mark.parametrize(
    "tokens, shown",
    [
        ([" Hello", " world", "\nUser:", " more"], "Hello world"),
        ([" Hi", "\n", "User", ":", " more"], "Hi"),  # split across tokens
        ([" Hi", "<|endoftext|>", "junk"], "Hi"),  # sent as plain text
    ],
)
def test_stop_text_in_tokens_is_never_shown(tgi_endpoint, tokens, shown):
    tgi_endpoint.stream(tokens, finish_reason="length")
    events, error = collect(tgi_endpoint.url)
    assert error is None
    done = assert_one_done_last(events)
    assert text_of(events) == shown
    assert done.finish_reason == "stop"


def test_text_held_back_as_a_possible_stop_is_kept_when_it_is_not_one(tgi_endpoint):
    tgi_endpoint.stream([" a", "\n", "Use", "ful", "\nUs"], finish_reason="length")
    events, _ = collect(tgi_endpoint.url)
    assert text_of(events) == "a\nUseful\nUs"
    assert events[-1].finish_reason == "length"


def test_a_server_side_stop_sequence_is_cut_and_reported_as_stop(tgi_endpoint):
    tgi_endpoint.stream([" Hi", ".", "\nUser:"], finish_reason="stop_sequence")
    events, _ = collect(tgi_endpoint.url)
    assert text_of(events) == "Hi."
    assert events[-1].finish_reason == "stop"


def test_the_special_eos_token_is_not_shown(tgi_endpoint):
    tgi_endpoint.stream([" Hi", "."], finish_reason="eos_token", eos="<|endoftext|>")
    events, _ = collect(tgi_endpoint.url)
    assert text_of(events) == "Hi."
    assert assert_one_done_last(events).finish_reason == "stop"


# ---- faults: each maps to one error class and exit code ------------------------------------

FAULTS = {
    "401": lambda ep: ep.error(401, "Authorization header is correct, but the token seems invalid"),
    "403": lambda ep: ep.error(403, "You don't have access to this endpoint"),
    "404": lambda ep: ep.error(404, "Model not found"),
    "422": lambda ep: ep.error(422, "Input validation error: `inputs` must have less than 2048 tokens", "validation"),
    "429": lambda ep: ep.error(429, "Model is overloaded", "overloaded"),
    "429 with Retry-After": lambda ep: ep.error(429, "Rate limit reached", retry_after="0"),
    "503": lambda ep: ep.error(503, "Model tiiuae/falcon-7b-instruct is currently loading"),
    "500": lambda ep: ep.error(500, "Internal server error"),
    "500 generation": lambda ep: ep.error(500, "Request failed during generation: CUDA out of memory", "generation"),
    "502 html": lambda ep: ep.page(
        502, "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
    ),
    "cut": lambda ep: ep.cut([" Hello", " wor"]),
    "cut cleanly": lambda ep: ep.cut([" Hello", " wor"], abrupt=False),
    "error event": lambda ep: ep.error_event(
        [" Hello"], "Request failed during generation: Server error: out of memory"
    ),
}


@pytest.mark.parametrize(
    "fault, error_class, exit_code",
    [
        ("401", AuthRejected, 4),
        ("403", AuthRejected, 4),
        ("404", Rejected, 5),
        ("422", Rejected, 5),
        ("429", Overloaded, 6),
        ("503", Overloaded, 6),
        ("500", EndpointError, 1),
        ("500 generation", EndpointError, 1),
    ],
)
def test_an_error_status_maps_to_its_error(tgi_endpoint, fault, error_class, exit_code):
    FAULTS[fault](tgi_endpoint)
    events, error = collect(tgi_endpoint.url)
    assert events == []
    assert type(error) is error_class
    assert error.exit_code == exit_code
    assert "\n" not in error.message


def test_a_validation_error_says_what_the_server_said(tgi_endpoint):
    FAULTS["422"](tgi_endpoint)
    _, error = collect(tgi_endpoint.url)
    assert "Input validation error: `inputs` must have less than 2048 tokens" in error.message
    assert len(tgi_endpoint.requests) == 1  # not retried


def test_a_404_without_a_json_body_is_rejected(tgi_endpoint):
    tgi_endpoint.page(404, "", content_type="text/plain")
    _, error = collect(tgi_endpoint.url)
    assert type(error) is Rejected


@pytest.mark.parametrize("fault", ["401", "404", "422", "500"])
def test_errors_other_than_overloaded_are_not_retried(tgi_endpoint, fault):
    FAULTS[fault](tgi_endpoint)
    collect(tgi_endpoint.url)
    assert len(tgi_endpoint.requests) == 1


@pytest.mark.parametrize("fault", ["429", "429 with Retry-After", "503"])
def test_overloaded_is_raised_only_after_retries(tgi_endpoint, fault):
    FAULTS[fault](tgi_endpoint)
    _, error = collect(tgi_endpoint.url)
    assert type(error) is Overloaded and error.exit_code == 6
    assert len(tgi_endpoint.requests) == 1 + tgi.RETRIES
    bodies = [r.body for r in tgi_endpoint.requests]
    assert all(body == bodies[0] for body in bodies)


def test_a_retry_that_succeeds_gives_the_reply(tgi_endpoint):
    tgi_endpoint.error(429, "Model is overloaded", "overloaded").stream([" Fine"])
    events, error = collect(tgi_endpoint.url)
    assert error is None
    assert text_of(events) == "Fine"
    assert len(tgi_endpoint.requests) == 2


def test_retry_after_is_honoured_but_capped(tgi_endpoint, monkeypatch):
    monkeypatch.setattr(tgi, "MAX_RETRY_AFTER_S", 0.2)
    tgi_endpoint.error(429, "Rate limit reached", retry_after="3600")
    started = time.monotonic()
    _, error = collect(tgi_endpoint.url)
    assert type(error) is Overloaded
    assert time.monotonic() - started < 3  # capped: not an hour
    times = [r.at for r in tgi_endpoint.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == tgi.RETRIES
    # Honoured: each wait is about the cap (±20 % jitter), far above the 0.001 s backoff.
    assert all(gap >= 0.2 * 0.8 - 0.01 for gap in gaps), gaps


def test_an_html_error_page_is_reported_as_not_tgi_without_its_markup(tgi_endpoint):
    FAULTS["502 html"](tgi_endpoint)
    _, error = collect(tgi_endpoint.url)
    assert isinstance(error, EndpointError)
    assert "not a TGI answer" in error.message
    assert not re.search(r"</?[a-zA-Z!]", error.message), error.message
    assert "\n" not in error.message


def test_an_html_page_with_status_200_is_an_error_not_an_empty_reply(tgi_endpoint):
    tgi_endpoint.page(200, "<html><body><form>Sign in to continue</form></body></html>")
    events, error = collect(tgi_endpoint.url)
    assert not [e for e in events if isinstance(e, Done)]
    assert isinstance(error, EndpointError)
    assert not re.search(r"</?[a-zA-Z!]", error.message), error.message


@pytest.mark.parametrize("fault", ["cut", "cut cleanly"])
def test_a_cut_stream_yields_what_arrived_then_fails(tgi_endpoint, fault):
    FAULTS[fault](tgi_endpoint)
    events, error = collect(tgi_endpoint.url)
    assert [type(e) for e in events] == [TextDelta, TextDelta]
    assert text_of(events) == "Hello wor"
    assert type(error) is EndpointError and error.exit_code == 1


def test_an_error_event_inside_the_stream_fails_after_what_arrived(tgi_endpoint):
    FAULTS["error event"](tgi_endpoint)
    events, error = collect(tgi_endpoint.url)
    assert text_of(events) == "Hello"
    assert not [e for e in events if isinstance(e, Done)]
    assert type(error) is EndpointError
    assert "out of memory" in error.message


def test_a_refused_connection_is_unreachable(closed_port_url):
    events, error = collect(closed_port_url)
    assert events == []
    assert type(error) is Unreachable and error.exit_code == 3
    assert "refused" in error.message


def test_an_endpoint_that_never_answers_times_out(tgi_endpoint):
    tgi_endpoint.hang()
    started = time.monotonic()
    events, error = collect(tgi_endpoint.url, timeout=1)
    elapsed = time.monotonic() - started
    assert events == []
    assert type(error) is Timeout and error.exit_code == 3
    assert elapsed < 1 + 2, elapsed  # correctness bound: the timeout is applied, not a benchmark


def test_a_reply_that_stalls_times_out_after_what_arrived(tgi_endpoint):
    tgi_endpoint.stall([" Hello", " there"])
    started = time.monotonic()
    events, error = collect(tgi_endpoint.url, timeout=1)
    assert text_of(events) == "Hello there"
    assert type(error) is Timeout and error.exit_code == 3
    assert time.monotonic() - started < 1 + 2


# ---- secrets never shown -------------------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_api_key_is_never_in_an_error_message(tgi_endpoint, fault):
    FAULTS[fault](tgi_endpoint)
    _, error = collect(tgi_endpoint.url)
    assert error is not None
    assert KEY not in error.message and KEY not in str(error)


def test_the_api_key_is_not_repeated_when_the_server_echoes_it(tgi_endpoint):
    tgi_endpoint.error(401, f"Invalid token 'Bearer {KEY}'")
    _, error = collect(tgi_endpoint.url)
    assert type(error) is AuthRejected
    assert KEY not in error.message and KEY not in str(error)


def _with_credentials(url: str) -> str:
    return url.replace("http://", "http://alice:pw-s3cret@")


@pytest.mark.parametrize("fault", ["401", "422", "500", "502 html", "cut", "error event", "hang"])
def test_credentials_in_the_url_are_never_shown(tgi_endpoint, fault):
    (FAULTS.get(fault) or (lambda ep: ep.hang()))(tgi_endpoint)
    url = _with_credentials(tgi_endpoint.url)
    _, error = collect(url, timeout=1)
    assert error is not None
    shown = [error.message, str(error), backend_for(url).describe()]
    assert not [text for text in shown if "alice" in text or "pw-s3cret" in text], shown


def test_credentials_in_an_unreachable_url_are_never_shown(closed_port_url):
    _, error = collect(_with_credentials(closed_port_url))
    assert type(error) is Unreachable
    assert "alice" not in error.message and "pw-s3cret" not in error.message


# ---- cancelling closes the connection ---------------------------------------------------------


def test_closing_the_stream_closes_the_connection(tgi_endpoint):
    tgi_endpoint.forever(interval=0.05)
    backend = backend_for(tgi_endpoint.url)
    stream = backend.stream(PROMPT, PARAMS)
    first, second = next(stream), next(stream)
    assert isinstance(first, TextDelta) and isinstance(second, TextDelta)
    stream.close()
    assert tgi_endpoint.disconnected.wait(2), "the server kept streaming to a closed iterator"
    backend.close()


def test_the_endpoint_can_be_reached_again_after_a_cancelled_stream(tgi_endpoint):
    tgi_endpoint.forever(interval=0.05).stream([" Again"])
    backend = backend_for(tgi_endpoint.url)
    stream = backend.stream(PROMPT, PARAMS)
    next(stream)
    stream.close()
    try:
        events = list(backend.stream(PROMPT, PARAMS))
    finally:
        backend.close()
    assert text_of(events) == "Again"


def test_describe_names_the_kind_once():
    """The banner and /show: not "tgi (http://…, tgi)" (issue 15, item 17)."""
    url = "http://127.0.0.1:1"
    assert backend_for(url).describe() == f"tgi endpoint {url}"
    named = TgiBackend(ModelSpec(name="falcon-40b", backend="tgi", endpoint=url))
    assert named.describe() == f"falcon-40b (tgi endpoint {url})"

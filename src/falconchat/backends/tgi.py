"""A text-generation-inference endpoint, through the `text-generation` client's wire types.

The request body is built and validated by `text_generation.types.Request`, each
event parsed by its `StreamResponse`, and error payloads classified by its
`parse_error`. The HTTP itself is a `requests` session of our own rather than
`Client.generate_stream`: that method hides the response, so it can neither tell
a 401 from any other failure (it reports `UnknownError`) nor close the
connection when the user presses Ctrl-C — and closing is how TGI learns to stop.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from typing import TYPE_CHECKING

from falconchat.config_models import ModelSpec
from falconchat.errors import (
    AuthRejected,
    ConfigError,
    EndpointError,
    Overloaded,
    Rejected,
    Timeout,
    Unreachable,
)
from falconchat.prompt import clean_reply, messages_text, stop_sequences
from falconchat.text import safe_url, server_message
from falconchat.types import Done, SamplingParams, TextDelta, TokenStream

if TYPE_CHECKING:
    import requests

DEFAULT_CONTEXT = 2048
RETRIES = 3  # for "overloaded" answers that come before the first token
BACKOFF_S = 0.5
MAX_RETRY_AFTER_S = 10.0


class TgiBackend:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name = spec.name
        self.takes_messages = False  # TGI's generate API: one Falcon-style text prompt
        self.prompt_format = "falcon"
        self.sees_images = True  # Markdown images in the prompt: what TGI's vision models read
        self.url = spec.endpoint or ""  # config refuses a tgi model without one
        self.shown_url = safe_url(spec.endpoint or "")
        self._session: requests.Session | None = None
        self._context_length: int | None = spec.context_length

    def describe(self) -> str:
        where = f"tgi endpoint {self.shown_url}"
        return where if self.name == "tgi" else f"{self.name} ({where})"  # the kind said once

    @property
    def context_length(self) -> int:
        """As configured, else the endpoint's own `max_total_tokens` from GET /info, else 2048."""
        if self._context_length is None:
            self._context_length = self._advertised_context() or DEFAULT_CONTEXT
        return self._context_length

    def _advertised_context(self) -> int | None:
        # An endpoint that cannot be reached fails here with the same error generate would give.
        response = self._request("GET", self.url + "/info", headers=self._headers())
        with closing(response):
            payload = _json(response.raw.read(65536, decode_content=True)) if response.status_code == 200 else None
        total = payload.get("max_total_tokens") if isinstance(payload, dict) else None
        return total if isinstance(total, int) and total > 0 else None  # else: an older or proxied endpoint

    def check(self) -> str:
        """A quick look: does the endpoint answer its health route?"""
        quick = TgiBackend(replace(self.spec, timeout=min(self.spec.timeout, 5.0)))
        try:
            response = quick._request("GET", self.url + "/health", headers=self._headers())
            with closing(response):
                if response.status_code in (401, 403):
                    raise _by_status(response.status_code, "health check", self.shown_url)
                return "ok" if response.status_code == 200 else f"answers HTTP {response.status_code} on /health"
        finally:
            quick.close()

    def count_tokens(self, text: str) -> int:
        # No tokenizer on this side: a conservative estimate (English runs ~4 characters a token).
        return len(text) // 3 + 1

    def count_message_tokens(self, messages: Sequence[dict]) -> int:
        return self.count_tokens(messages_text(messages))

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        stops = stop_sequences(params.stop)
        return clean_reply(self._generate(prompt, params, stops), stops, after=prompt)

    def warm_up(self) -> None:
        """Nothing to load: the endpoint is asked when there is something to ask."""

    def stream_messages(self, messages: Sequence[dict], params: SamplingParams) -> TokenStream:
        raise ConfigError('a tgi model takes a text prompt (format = "falcon"), not chat messages')

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # ---- the request -------------------------------------------------------------------

    def _body(self, prompt: str, params: SamplingParams, stops: list[str]) -> dict:
        from text_generation.types import Parameters, Request  # noqa: PLC0415 (heavy: text_generation)

        sampling = params.temperature > 0
        parameters = Parameters(
            details=True,
            do_sample=sampling,
            max_new_tokens=params.max_new_tokens,  # explicit: the client's default is 20
            temperature=params.temperature if sampling else None,
            top_p=params.top_p if sampling and params.top_p < 1 else None,
            top_k=params.top_k if sampling and params.top_k > 0 else None,
            repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
            seed=params.seed,
            stop=stops,
            grammar=_grammar(params.constraint),
        )
        return Request(inputs=prompt, stream=True, parameters=parameters).model_dump(exclude_none=True)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.spec.api_key:
            headers["Authorization"] = f"{self.spec.auth_scheme} {self.spec.api_key}"
        return headers

    def _http(self):
        import requests  # noqa: PLC0415 (heavy: requests)

        if self._session is None:
            self._session = requests.Session()
        return self._session

    def _request(self, method: str, url: str, **kwargs):
        """One HTTP request; failing to connect or to hear back becomes our error."""
        import requests  # noqa: PLC0415 (heavy: requests)

        try:
            return self._http().request(
                method, url, stream=True, timeout=(min(self.spec.timeout, 30.0), self.spec.timeout), **kwargs
            )
        except requests.exceptions.ConnectTimeout:
            raise Timeout(
                f"{self.shown_url} did not accept a connection within {self.spec.timeout:g}s; is it up?"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise Timeout(
                f"{self.shown_url} sent no answer within {self.spec.timeout:g}s; try again or raise --timeout"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise Unreachable(
                f"cannot reach {self.shown_url}: {_connection_reason(exc)}; check the URL and that the endpoint is running"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise Unreachable(f"cannot reach {self.shown_url}: {type(exc).__name__}") from None

    def _open(self, body: dict):
        """POST, retrying answers that say "overloaded" with backoff and jitter — but never
        waiting past the timeout: `--timeout 5` means an answer, or an error, within 5 s."""
        deadline = time.monotonic() + self.spec.timeout
        retries = RETRIES if self.spec.retries is None else self.spec.retries
        for attempt in range(retries + 1):
            response = self._request("POST", self.url, json=body, headers=self._headers())
            if response.status_code == 200 and _is_event_stream(response):
                return response
            with closing(response):
                error = self._status_error(response)
            if not isinstance(error, Overloaded) or attempt == retries:
                raise error
            retry_after = _retry_after(response)
            delay = BACKOFF_S * 2**attempt if retry_after is None else retry_after
            wait = min(delay, MAX_RETRY_AFTER_S) * random.uniform(0.8, 1.2)
            if time.monotonic() + wait > deadline:
                raise error
            time.sleep(wait)
        raise AssertionError("unreachable")

    # ---- the stream --------------------------------------------------------------------

    def _generate(self, prompt: str, params: SamplingParams, stops: list[str]) -> TokenStream:
        import requests  # noqa: PLC0415 (heavy: requests)
        from pydantic import ValidationError as PydanticError  # noqa: PLC0415 (heavy: pydantic)
        from text_generation.types import StreamResponse  # noqa: PLC0415 (heavy: text_generation)

        try:
            body = self._body(prompt, params, stops)
        except Exception as exc:  # the client's own validators raise plain exceptions
            raise Rejected(f"invalid request for {self.shown_url}: {server_message(str(exc))}") from None
        started = time.monotonic()
        response = self._open(body)
        first_token_s = None
        tokens = 0
        # Leaving this block — finished, closed by the caller, or interrupted —
        # closes the HTTP response, and TGI stops generating.
        with closing(response):
            try:
                for line in response.iter_lines():
                    if not line.startswith(b"data:"):
                        continue
                    payload = _json(line[5:])
                    if payload is None:
                        raise EndpointError(
                            f"{self.shown_url} sent a malformed event; the reply is incomplete: try again, and check that the URL is a TGI endpoint"
                        )
                    if "error" in payload:
                        raise self._payload_error(payload, response.status_code)
                    try:
                        event = StreamResponse(**payload)
                    except PydanticError:
                        raise EndpointError(
                            f"{self.shown_url} sent an event that is not TGI's; the reply is incomplete: check that the URL is a TGI endpoint"
                        ) from None
                    if first_token_s is None:
                        first_token_s = time.monotonic() - started
                    tokens += 1
                    if not event.token.special:
                        yield TextDelta(event.token.text, event.token.id, event.token.logprob)
                    if event.details is not None:
                        reason = event.details.finish_reason.value
                        yield Done(
                            "length" if reason == "length" else "stop",
                            completion_tokens=event.details.generated_tokens,
                            first_token_s=first_token_s,
                            total_s=time.monotonic() - started,
                        )
                        return
            except requests.exceptions.ConnectionError as exc:
                if "Read timed out" in str(exc):
                    raise Timeout(
                        f"{self.shown_url} stopped sending for {self.spec.timeout:g}s; the reply is incomplete: try again or raise --timeout"
                    ) from None
                raise EndpointError(
                    f"the connection to {self.shown_url} broke; the reply is incomplete: try again"
                ) from None
            except requests.exceptions.RequestException:
                raise EndpointError(
                    f"the connection to {self.shown_url} broke; the reply is incomplete: try again"
                ) from None
        raise EndpointError(
            f"{self.shown_url} ended the stream before the reply was complete ({tokens} tokens arrived); try again"
        )

    # ---- errors ------------------------------------------------------------------------

    def _status_error(self, response) -> EndpointError:
        status = response.status_code
        payload = _json(response.raw.read(65536, decode_content=True))  # bounded: never the whole body
        if isinstance(payload, dict) and "error" in payload:
            return self._payload_error(payload, status)
        kind = server_message(response.headers.get("content-type", "unknown").split(";")[0])
        return _by_status(status, f"not a TGI answer ({kind})", self.shown_url)

    def _payload_error(self, payload: dict, status: int) -> EndpointError:
        from text_generation.errors import GenerationError, OverloadedError, ValidationError, parse_error  # noqa: PLC0415 (heavy: text_generation)

        message = server_message(payload.get("error", ""), self.spec.api_key)
        error = parse_error(status, {"error": message, "error_type": str(payload.get("error_type", ""))})
        if isinstance(error, ValidationError):
            return Rejected(
                f"{self.shown_url} rejected the request: {message}; check the settings it names (--max-new-tokens, sampling)"
            )
        if isinstance(error, OverloadedError):
            return Overloaded(f"{self.shown_url} is overloaded: {message}; try again later")
        if isinstance(error, GenerationError):
            return EndpointError(f"{self.shown_url} failed to generate: {message}; try again")
        # The client reports a 401 as UnknownError and a 403 as ShardNotReadyError: the status tells.
        return _by_status(status, message, self.shown_url)


def _grammar(constraint):
    """TGI's `grammar` parameter: {"type": "json", "value": schema} or {"type": "regex", ...}."""
    from text_generation.types import Grammar, GrammarType  # noqa: PLC0415 (heavy: text_generation)

    if constraint is None:
        return None
    if constraint.kind == "json_schema":
        return Grammar(type=GrammarType.Json, value=constraint.value)
    if constraint.kind == "json":
        return Grammar(type=GrammarType.Json, value={"type": "object"})
    if constraint.kind == "regex":
        return Grammar(type=GrammarType.Regex, value=constraint.value)
    raise ConfigError("a TGI endpoint takes JSON Schema or regex grammars, not GBNF")


def _by_status(status: int, message: str, url: str) -> EndpointError:
    if status in (401, 403):
        return AuthRejected(
            f"{url} rejected the credentials (HTTP {status}: {message}); check HF_API_KEY and the auth scheme"
        )
    if status in (429, 503):
        return Overloaded(f"{url} is overloaded or unavailable (HTTP {status}: {message}); try again later")
    if status == 404:
        return Rejected(f"{url} has no such route (HTTP 404: {message}); check the endpoint URL")
    if status in (400, 413, 422):
        return Rejected(
            f"{url} rejected the request (HTTP {status}: {message}); check the settings and the size of the prompt"
        )
    if status == 502:
        return Unreachable(
            f"{url} is unreachable behind its gateway (HTTP 502: {message}); check the URL and that the endpoint is running"
        )
    if status == 504:
        return Timeout(f"{url} timed out behind its gateway (HTTP 504: {message}); try again later")
    return EndpointError(
        f"{url} failed (HTTP {status}: {message}); try again, and check the endpoint's logs if it goes on"
    )


def _is_event_stream(response) -> bool:
    kind = response.headers.get("content-type", "text/event-stream")
    return kind.split(";")[0].strip().lower() == "text/event-stream"


def _json(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _retry_after(response) -> float | None:
    try:
        return max(float(response.headers.get("retry-after", "")), 0.0)
    except ValueError:
        return None


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    if (
        "Name or service not known" in text
        or "nodename nor servname" in text
        or "NameResolution" in text
        or "getaddrinfo" in text
    ):
        return "the host name does not resolve"
    if "Connection refused" in text:
        return "connection refused"
    return "connection failed"

"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server, OpenAI).

`format = "chat"` sends chat messages and the server applies the model's own
template; `format = "falcon"` sends falconchat's Falcon-style prompt to the
completions API with its stop sequences. Closing the stream closes the HTTP
response, which is how the server learns to stop.

The streamed requests to an `http://` server with no proxy in front go through
backends/openai_http.py, a lean HTTP/1.1 client (the SDK and httpx cost `batch` more
CPU than everything else); https, a proxy (HTTP_PROXY/ALL_PROXY, unless NO_PROXY names
the host) and `check()` keep the `openai` SDK, which knows TLS and proxies. Both paths
send the same body and headers, retry alike and fail with the same errors and words.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING

from falconchat.backends import openai_http, openai_sdk
from falconchat.config_models import ModelSpec
from falconchat.errors import AuthRejected, ConfigError, EndpointError, Overloaded, Rejected, Timeout, Unreachable
from falconchat.images import content_parts
from falconchat.prompt import clean_reply, messages_text, stop_sequences
from falconchat.text import safe_url, server_message
from falconchat.types import Constraint, Done, ReasoningDelta, SamplingParams, TextDelta, TokenStream

if TYPE_CHECKING:
    import openai

DEFAULT_CONTEXT = 4096
RETRIES = 2  # the SDK's own backoff (openai_http's the same), for 429/5xx/connection errors before the first token


class OpenAIBackend:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name = spec.name
        self.shown_url = safe_url(spec.endpoint or "")
        self.prompt_format = spec.format  # "chat" or "falcon" (the probe has decided an "auto")
        self.takes_messages = spec.format == "chat"
        self.sees_images = self.takes_messages  # image_url parts go in chat messages, not a text prompt
        self._client: openai.OpenAI | None = None
        self._lean: openai_http.Client | None = None
        self._lean_decided = False

    def describe(self) -> str:
        where = f"openai endpoint {self.shown_url}"
        return f"{where}" if self.name == "openai" else f"{self.name} ({where})"  # the kind said once

    @property
    def context_length(self) -> int:
        return self.spec.context_length or DEFAULT_CONTEXT

    def count_tokens(self, text: str) -> int:
        return len(text) // 3 + 1  # no tokenizer on this side: a conservative estimate

    def count_message_tokens(self, messages: Sequence[dict]) -> int:
        return self.count_tokens(messages_text(messages))

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        stops = stop_sequences(params.stop)
        request = {**self._sampling(params), **self._structure(params.constraint, chat=False)}
        if params.logprobs is not None:
            request["logprobs"] = params.logprobs
        chunks = self._create("completions", prompt=prompt, stop=stops[:4], **request)
        return clean_reply(self._events(chunks, _completion_text), stops, after=prompt)

    def stream_messages(self, messages: Sequence[dict], params: SamplingParams) -> TokenStream:
        stops = list(params.stop)
        request = _merged(self._sampling(params), self._structure(params.constraint, chat=True), self._thinking())
        if params.logprobs is not None:
            request.update(logprobs=True, top_logprobs=params.logprobs)
        sent = [{**m, "content": content_parts(m["content"])} if m["role"] == "user" else m for m in messages]
        chunks = self._create("chat", messages=sent, stop=stops[:4] or None, **request)
        return clean_reply(self._events(chunks, _chat_delta), stops, drop_leading_space=False)

    def check(self) -> str:
        """A quick look: does the server answer and know the model?"""
        with self._errors():
            names = [m.id for m in self.client().with_options(timeout=5.0, max_retries=0).models.list()]
        wanted = self.spec.remote_model or self.name
        return "ok" if wanted in names or len(names) == 1 else f"answers, but has no model {wanted!r}"

    def warm_up(self) -> None:
        """Nothing to load: the endpoint is asked when there is something to ask."""

    def close(self) -> None:
        if self._client is not None:
            openai_sdk.release(self._client_key(), self._client)
            self._client = None
        if self._lean is not None:
            openai_sdk.release(("http", *self._client_key()), self._lean)
            self._lean = None
        self._lean_decided = False

    # ---- the SDK -----------------------------------------------------------------------

    def client(self):
        if self._client is None:
            try:
                import openai  # noqa: PLC0415 (heavy: openai)
            except ImportError:
                raise ConfigError(
                    "the openai backend needs the openai package: pip install 'falconchat[openai]'"
                ) from None
            self._client = openai_sdk.acquire(
                self._client_key(),
                lambda: openai.OpenAI(
                    base_url=self.spec.endpoint,
                    api_key=self.spec.api_key or "none",  # local servers take any key; the SDK insists on one
                    default_headers=dict(self.spec.headers),
                    timeout=self.spec.timeout,
                    max_retries=self._retries(),
                ),
            )
        return self._client

    def _lean_client(self) -> openai_http.Client | None:
        """The lean client, where it can reach the server (plain http, no proxy: decided once,
        when the first request is sent), shared like the SDK's clients; else None."""
        if not self._lean_decided:
            self._lean_decided = True
            spec = self.spec
            headers = dict(spec.headers)
            if spec.endpoint and openai_http.usable(spec.endpoint, spec.api_key, headers):
                self._lean = openai_sdk.acquire(
                    ("http", *self._client_key()),
                    lambda: openai_http.Client(
                        spec.endpoint or "", spec.api_key, headers, spec.timeout, self._retries()
                    ),
                )
        return self._lean

    def _client_key(self) -> tuple:
        """What makes two backends' clients the same (shared: backends/openai_sdk.py)."""
        return (self.spec.endpoint, self.spec.api_key, self.spec.headers, self.spec.timeout, self._retries())

    def _retries(self) -> int:
        return RETRIES if self.spec.retries is None else self.spec.retries

    def _sampling(self, params: SamplingParams) -> dict:
        # top_k and repetition_penalty are not in OpenAI's API; servers differ on their names.
        values = {
            "model": self.spec.remote_model or self.name,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        if params.seed is not None:
            values["seed"] = params.seed
        return values

    def _thinking(self) -> dict:
        """`--thinking/--no-thinking` and `--reasoning-effort` for the server's chat template:
        vLLM, SGLang and llama.cpp's server pass `chat_template_kwargs` to it (Qwen3's and
        SmolLM3's `enable_thinking`); `reasoning_effort` is the OpenAI API's own field (gpt-oss
        on vLLM, o-series models), which llama.cpp's server also reads. Nothing is sent unless
        asked, so servers that know neither are untouched."""
        values: dict = {}
        kwargs: dict = {}
        if self.spec.thinking is not None:
            kwargs["enable_thinking"] = self.spec.thinking
        if self.spec.reasoning_effort:
            values["reasoning_effort"] = self.spec.reasoning_effort
            kwargs["reasoning_effort"] = self.spec.reasoning_effort
        if kwargs:
            values["extra_body"] = {"chat_template_kwargs": kwargs}
        return values

    def _structure(self, constraint: Constraint | None, *, chat: bool) -> dict:
        """The constraint, as this server takes it: vLLM's `structured_outputs`, llama-cpp-python's
        `response_format` with a `schema`, else the OpenAI API's `response_format`."""
        if constraint is None:
            return {}
        kind, value = constraint.kind, constraint.value
        if self.spec.server == "vllm":
            rules = {"json_schema": {"json": value}, "json": {"json_object": True}, "regex": {"regex": value}}
            return {"extra_body": {"structured_outputs": rules.get(kind, {"grammar": value})}}
        if self.spec.server == "llama-cpp-python" and kind == "gbnf":
            return {"extra_body": {"grammar": value}}
        if not chat:
            raise ConfigError(
                f'{self.shown_url}: structured output (--schema, --json-mode) needs format = "chat" on this server'
            )
        if kind == "json":
            return {"response_format": {"type": "json_object"}}
        if kind != "json_schema":
            raise ConfigError(f"{self.shown_url} takes JSON schemas, not {kind} constraints")
        if self.spec.server == "llama-cpp-python":  # its response_format knows only json_object, with a schema
            return {"response_format": {"type": "json_object", "schema": value}}
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": value}}}

    def _create(self, api: str, **request) -> Generator:
        """Start the request lazily, when the stream is first read, like every backend. The SDK's
        generic POST with its stream read as plain JSON (backends/openai_sdk.py): the same request
        body as `chat.completions.create` sends, without a typed object per token; or the lean
        client's POST of that body (backends/openai_http.py), which yields the same dicts."""
        started = time.monotonic()
        body = {key: value for key, value in request.items() if key != "extra_body"}
        body.update(request.get("extra_body", {}))
        path = "/chat/completions" if api == "chat" else "/completions"
        lean = self._lean_client()
        if lean is not None:
            chunks = lean.stream(path, body)
            with closing(chunks):
                with self._lean_errors(started):  # the request and its tries, until the reply begins
                    first = next(chunks, None)
                if first is None:
                    return
                yield first
                with self._lean_errors(None):  # a timeout now is one wait, not the tries'
                    yield from chunks
            return
        import openai  # noqa: PLC0415 (heavy: openai)

        with self._errors(started=started):
            response = self.client().post(
                path, cast_to=object, body=body, stream=True, stream_cls=openai_sdk.plain_stream(openai)
            )
        yield from self._read(response)

    def _read(self, response) -> Generator:
        with closing(response), self._errors(midway=True):
            yield from response

    def _events(self, chunks: Generator, text_of) -> TokenStream:
        started = time.monotonic()
        first_token_s = None
        count = 0
        logprobs: list[dict] = []
        with closing(chunks):
            for chunk in chunks:
                choices = chunk.get("choices") if isinstance(chunk, dict) else None
                if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                    continue
                choice = choices[0]
                if choice.get("logprobs"):
                    logprobs.extend(_token_logprobs(choice["logprobs"]))
                text, reasoning = text_of(choice)
                if reasoning:
                    if first_token_s is None:
                        first_token_s = time.monotonic() - started
                    count += 1
                    yield ReasoningDelta(reasoning)
                if text:
                    if first_token_s is None:
                        first_token_s = time.monotonic() - started
                    count += 1
                    yield TextDelta(text)
                if choice.get("finish_reason"):
                    done = Done(
                        "length" if choice["finish_reason"] == "length" else "stop",
                        completion_tokens=count,
                        first_token_s=first_token_s,
                        total_s=time.monotonic() - started,
                        logprobs=tuple(logprobs) if logprobs else None,
                    )
                    _read_to_the_end(chunks)
                    yield done
                    return
        raise EndpointError(f"{self.shown_url} ended the stream before the reply was complete ({count} pieces arrived)")

    @contextmanager
    def _errors(self, midway: bool = False, started: float | None = None):
        """The SDK's exceptions, as falconchat's one-line errors with their exit codes."""
        import openai  # noqa: PLC0415 (heavy: openai)

        url = self.shown_url
        try:
            yield
        except openai.APITimeoutError:
            raise self._timed_out(started) from None
        except openai.APIConnectionError:
            if midway:
                raise EndpointError(f"the connection to {url} broke; the reply is incomplete") from None
            raise Unreachable(f"cannot reach {url}; check the URL and that the server is running") from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc.status_code, getattr(exc, "message", "") or str(exc)) from None
        except openai.APIError as exc:
            raise EndpointError(f"{url} sent something unexpected: {self._message(exc)}") from None

    @contextmanager
    def _lean_errors(self, started: float | None):
        """The lean client's failures (backends/openai_http.py), worded as the SDK's are above."""
        url = self.shown_url
        try:
            yield
        except openai_http.TimedOut:
            raise self._timed_out(started) from None
        except openai_http.Unanswered:
            raise Unreachable(f"cannot reach {url}; check the URL and that the server is running") from None
        except openai_http.Broken:
            raise EndpointError(f"the connection to {url} broke; the reply is incomplete") from None
        except openai_http.StatusError as exc:
            raise self._status_error(exc.status, exc.message) from None
        except openai_http.EventError as exc:
            raise EndpointError(f"{url} sent something unexpected: {self._message(exc)}") from None

    def _timed_out(self, started: float | None) -> Timeout:
        """No answer within --timeout; said with the whole wait when the retries made it longer
        (three tries of 15 s are 47 s: "within 15s" alone reads as a clock that is wrong)."""
        url, timeout = self.shown_url, self.spec.timeout
        waited = time.monotonic() - started if started is not None else 0.0
        within = (
            f"{timeout:g}s a try ({waited:.0f}s in all, with retries)" if waited > 1.5 * timeout else f"{timeout:g}s"
        )
        return Timeout(f"{url} sent no answer within {within}; try again or raise --timeout")

    def _status_error(self, status: int, message: str) -> EndpointError:
        """An error status after the retries, by its code (the SDK's classes of it alike)."""
        url = self.shown_url
        said = server_message(message, self.spec.api_key)
        if status in (401, 403):
            return AuthRejected(f"{url} rejected the credentials (HTTP {status}); check the API key")
        if status == 404:
            return Rejected(f"{url} has no such model or route (HTTP 404: {said})")
        if status == 429:
            return Overloaded(f"{url} is overloaded (HTTP 429: {said}); try again later")
        if status in (400, 413, 422):
            return Rejected(f"{url} rejected the request (HTTP {status}: {said})")
        if status == 503:
            return Overloaded(f"{url} is unavailable (HTTP 503); try again later")
        return EndpointError(f"{url} failed (HTTP {status}: {said})")

    def _message(self, exc) -> str:
        return server_message(getattr(exc, "message", "") or str(exc), self.spec.api_key)


def _merged(*parts: dict) -> dict:
    """Request fields from several sources; their `extra_body`s are merged, not replaced."""
    request: dict = {}
    for part in parts:
        for key, value in part.items():
            if key == "extra_body":
                request["extra_body"] = {**request.get("extra_body", {}), **value}
            else:
                request[key] = value
    return request


def _read_to_the_end(chunks: Generator) -> None:
    """What follows the finishing chunk (a usage chunk, then `data: [DONE]`, which servers send
    at once), read so that the HTTP response ends whole and its keep-alive connection goes back
    to the pool: closed mid-body, the connection is dropped and the next request opens another.
    A failure here costs the reply nothing (only the connection)."""
    try:
        for _ in chunks:
            pass
    except EndpointError:
        pass


def _token_logprobs(value) -> list[dict]:
    """A chunk's logprobs as entries of the chat API's shape ({token, logprob, bytes,
    top_logprobs}), from either API's: the chat API's `content` list, or the completions API's
    parallel lists (`tokens`, `token_logprobs`, `top_logprobs` as {token: logprob})."""
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("content"), list):
        return [entry for entry in value["content"] if isinstance(entry, dict) and "token" in entry]
    tokens, chosen = value.get("tokens"), value.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(chosen, list):
        return []
    listed = value.get("top_logprobs")
    tops: list = listed if isinstance(listed, list) else []
    entries = []
    for index, (token, logprob) in enumerate(zip(tokens, chosen)):
        top = tops[index] if index < len(tops) and isinstance(tops[index], dict) else {}
        entries.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(str(token).encode()),
                "top_logprobs": [{"token": t, "logprob": p, "bytes": list(str(t).encode())} for t, p in top.items()],
            }
        )
    return entries


def _completion_text(choice: dict) -> tuple[str, str]:
    return _text(choice.get("text")), ""


def _chat_delta(choice: dict) -> tuple[str, str]:
    """(reply text, reasoning): servers send reasoning as `reasoning_content` (DeepSeek, llama.cpp,
    older vLLM) or `reasoning` (newer vLLM, Ollama)."""
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return "", ""
    return _text(delta.get("content")), _text(delta.get("reasoning_content") or delta.get("reasoning"))


def _text(value) -> str:
    return value if isinstance(value, str) else ""

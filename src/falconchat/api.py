"""falconchat as a library (docs/api.md): open a model by the names the CLI takes, stream or get
a reply with the CLI's sampling values, keep a conversation, and ask for structured output that
is checked as `--schema` checks it (it fails closed). `ScriptedModel` is a model for tests.

Everything here is built from the pieces the CLI uses — `config.load_settings` chooses the
model, `open_backend` opens it, `exchange.start` fits the prompt and records the reply into a
`conversation.Conversation`, `structured.check_reply` checks it — so the library and the
commands cannot drift apart. `falconchat/__init__.py` re-exports these names lazily."""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

from falconchat.backends import open_backend
from falconchat.backends.base import Backend
from falconchat.config import load_settings
from falconchat.config_models import ModelSpec
from falconchat.config_values import parse
from falconchat.conversation import Conversation as Recorded
from falconchat.errors import UsageError
from falconchat.exchange import start
from falconchat.structured import check_reply, checked_schema, schema_constraint
from falconchat.structured import json_mode as any_json_object
from falconchat.types import (
    Constraint,
    Done,
    FinishReason,
    ReasoningDelta,
    SamplingParams,
    Script,
    SentPrompt,
    TextDelta,
    TokenStream,
    Turn,
)

__all__ = ["Conversation", "Model", "Reply", "ReplyStream", "Sampling", "ScriptedModel", "open_model"]

Schema = Mapping[str, Any] | str


class Sampling(TypedDict, total=False):
    """The sampling values a reply can be asked with: the CLI's flags of the same names, checked
    by the same rules (a value out of range is a ConfigError that says what is allowed)."""

    temperature: float  # 0 is greedy
    max_new_tokens: int
    top_p: float
    top_k: int
    repetition_penalty: float
    seed: int | None  # None: unseeded
    stop: Sequence[str]  # in addition to the format's own


@dataclass(frozen=True)
class Reply:
    """A finished reply. `value` is the parsed JSON when a schema or JSON mode was asked for
    (checked: a reply that does not fit raised InvalidReply instead), else None. `text` is as the
    model wrote it: pass it through `falconchat.text.sanitize` before showing it on a terminal."""

    text: str
    finish_reason: FinishReason  # "stop", "length" (max_new_tokens reached) or "cancelled" (closed early)
    model: str
    value: Any = None
    reasoning: str = ""  # what a thinking model thought first; never sent back to it
    prompt_tokens: int = 0
    completion_tokens: int = 0
    notices: tuple[str, ...] = ()  # what the CLI shows on stderr: "left out the 2 oldest turns …"

    def __str__(self) -> str:
        return self.text


class ReplyStream:
    """A reply as it is written: iterate it for the text, piece by piece. Closing it (`close()`,
    leaving a `with` block) stops the model, and the conversation keeps what arrived as a cut
    reply; `result()` reads what is left and returns the `Reply`. With a schema, the check runs
    when the reply ends: InvalidReply is raised from the iteration (or `result()`)."""

    def __init__(self, events: TokenStream, prompt_tokens: int, constraint: Constraint | None, model: str):
        self._events = events
        self._prompt_tokens = prompt_tokens
        self._constraint = constraint
        self._model = model
        self.notices: list[str] = []
        self._reply: Reply | None = None
        self._texts = self._read()

    def __iter__(self) -> Iterator[str]:
        return self._texts

    def __enter__(self) -> ReplyStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._texts.close()

    def result(self) -> Reply:
        for _ in self._texts:
            pass
        if self._reply is None:  # closed before it began
            return Reply("", "cancelled", self._model, prompt_tokens=self._prompt_tokens)
        return self._reply

    def _read(self) -> Generator[str, None, None]:
        parts: list[str] = []
        thoughts: list[str] = []
        done = Done("cancelled")
        try:
            with closing(self._events):
                for event in self._events:
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                        yield event.text
                    elif isinstance(event, ReasoningDelta):
                        thoughts.append(event.text)
                    else:
                        done = event
        finally:  # a stream closed early still says what arrived
            text = "".join(parts)
            self._reply = Reply(
                text,
                done.finish_reason,
                self._model,
                reasoning="".join(thoughts),
                prompt_tokens=done.prompt_tokens or self._prompt_tokens,
                completion_tokens=done.completion_tokens,
                notices=tuple(self.notices),
            )
        value = check_reply(text, self._constraint, cut=done.finish_reason == "length")
        self._reply = replace(self._reply, value=value)


class Conversation:
    """Several turns with one model: each reply is asked with the turns before it (the oldest
    left out when they no longer fit the model's context, as in the chat) and the system message."""

    def __init__(self, model: Model, system: str = ""):
        self.model = model
        self._recorded = Recorded(system=system)

    @property
    def system(self) -> str:
        return self._recorded.system

    @system.setter
    def system(self, text: str) -> None:
        self._recorded.system = text

    @property
    def turns(self) -> tuple[Turn, ...]:
        """Each exchange: `user`, `assistant` and `status` ("complete", "length", "cut", "error")."""
        return tuple(self._recorded.turns)

    def stream(
        self, message: str, *, schema: Schema | None = None, json_mode: bool = False, **sampling: Unpack[Sampling]
    ) -> ReplyStream:
        params = self.model.params(schema=schema, json_mode=json_mode, **sampling)
        notices: list[str] = []
        events, fitted = start(
            self._recorded, self.model.backend, message, params, notices.append, setting="max_new_tokens="
        )
        stream = ReplyStream(events, fitted.prompt_tokens, params.constraint, self.model.name)
        stream.notices = notices
        return stream

    def reply(
        self, message: str, *, schema: Schema | None = None, json_mode: bool = False, **sampling: Unpack[Sampling]
    ) -> Reply:
        return self.stream(message, schema=schema, json_mode=json_mode, **sampling).result()

    def undo(self) -> Turn | None:
        """Forget the last exchange (it is not sent again); return it."""
        return self._recorded.undo()

    def clear(self) -> None:
        self._recorded.clear()


class Model:
    """An opened model: `open_model()` (or `ScriptedModel` in tests). Close it when done (or use
    it as a context manager): a local model holds its weights, an endpoint its connection."""

    def __init__(self, backend: Backend, sampling: SamplingParams, system: str = "", cwd: Path | None = None):
        self.backend = backend
        self.sampling = sampling  # the values every reply starts from: the CLI's, from the same settings
        self.system = system  # the system message of a reply or conversation that names none
        self._cwd = cwd  # where a schema file named in `schema=` is read from

    @property
    def name(self) -> str:
        return self.backend.name

    def describe(self) -> str:
        return self.backend.describe()

    def conversation(self, system: str | None = None) -> Conversation:
        return Conversation(self, self.system if system is None else system)

    def stream(
        self,
        prompt: str,
        *,
        system: str | None = None,
        schema: Schema | None = None,
        json_mode: bool = False,
        **sampling: Unpack[Sampling],
    ) -> ReplyStream:
        """One prompt, no history (as `falconchat ask`): the reply as it is written."""
        return self.conversation(system).stream(prompt, schema=schema, json_mode=json_mode, **sampling)

    def reply(
        self,
        prompt: str,
        *,
        system: str | None = None,
        schema: Schema | None = None,
        json_mode: bool = False,
        **sampling: Unpack[Sampling],
    ) -> Reply:
        """One prompt, no history (as `falconchat ask`): the whole reply."""
        return self.stream(prompt, system=system, schema=schema, json_mode=json_mode, **sampling).result()

    def params(
        self, *, schema: Schema | None = None, json_mode: bool = False, **sampling: Unpack[Sampling]
    ) -> SamplingParams:
        """The sampling values a reply is asked with: this model's, changed by `sampling`
        (checked as the CLI checks its flags), with the constraint `schema` or `json_mode` says."""
        changes: dict[str, Any] = {}
        for key, value in sampling.items():
            if key not in Sampling.__annotations__:
                raise UsageError(f"unknown sampling value {key!r}; known: {', '.join(Sampling.__annotations__)}")
            changes[key] = None if key == "seed" and value is None else parse(key, value, f"{key}=")
        if schema is not None and json_mode:
            raise UsageError("give schema= or json_mode=True, not both")
        if isinstance(schema, str):
            changes["constraint"] = schema_constraint(schema, self._cwd)
        elif schema is not None:
            changes["constraint"] = Constraint("json_schema", checked_schema(dict(schema), "schema="))
        elif json_mode:
            changes["constraint"] = any_json_object()
        return self.sampling.with_changes(**changes)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_model(
    name: str | None = None,
    *,
    endpoint: str | None = None,
    model_path: str | os.PathLike[str] | None = None,
    role: str | None = None,
    config: str | os.PathLike[str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Model:
    """A model chosen as the CLI chooses one: `name` is `-m NAME` (the bundled "smollm2", or a
    `[models.NAME]` of the config file; a URL is taken as `endpoint`), `endpoint` is `--endpoint
    URL` (TGI or OpenAI-compatible, probed), `model_path` a GGUF file; none of them: the bundled
    model. Settings come as the CLI's do — these arguments, then `environ` (default: this
    process's), a .env file, the config file — and give the model its sampling values and system
    message. Nothing is loaded until the first reply (a local model's weights, a probe)."""
    if name is not None and name.startswith(("http://", "https://")) and endpoint is None:
        name, endpoint = None, name
    flags = {
        "model": name,
        "endpoint": endpoint,
        "model_path": os.fspath(model_path) if model_path is not None else None,
        "role": role,
        "config": os.fspath(config) if config is not None else None,
        "env_file": os.fspath(env_file) if env_file is not None else None,
    }
    where = Path.cwd() if cwd is None else Path(cwd)
    settings = load_settings(flags, environ=os.environ if environ is None else environ, cwd=where)
    for line in settings.warnings:  # what the CLI prints on stderr: names it does not know
        warnings.warn(line, stacklevel=2)
    return Model(open_backend(settings.model), settings.sampling, settings.system, where)


class ScriptedModel(Model):
    """A model for tests (llm's MockModel): it answers with `replies`, one per prompt in turn,
    and records every prompt it is sent in `prompts`. It is the registry's "scripted" backend,
    opened as every model is, so conversations, sampling values (`max_new_tokens` cuts a reply,
    `stop` ends one) and the schema check behave as with a real model. A prompt with no reply
    left raises UsageError."""

    def __init__(
        self, replies: Iterable[str] = (), *, format: Literal["chat", "falcon"] = "chat", context_length: int = 4096
    ):
        self._script = Script(list(replies))
        spec = ModelSpec(
            name="scripted", backend="scripted", format=format, context_length=context_length, script=self._script
        )
        super().__init__(open_backend(spec), SamplingParams())

    def enqueue(self, *replies: str) -> None:
        """More replies, given after those already queued."""
        self._script.replies.extend(replies)

    @property
    def prompts(self) -> list[SentPrompt]:
        """What it was sent, oldest first: `messages` (format "chat": system, history, the
        message) or `text` (format "falcon"), and the sampling `params`."""
        return list(self._script.prompts)

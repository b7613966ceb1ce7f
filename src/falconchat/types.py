"""The shared vocabulary: messages, sampling settings and the token-stream events.

Every layer speaks one type: a synchronous iterator of `TextDelta` events (the
reply) and `ReasoningDelta` events (what a thinking model thought before it),
ending with exactly one `Done`. Errors are raised from the iterator;
cancelling is closing it.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, Union

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class TextDelta:
    text: str
    token_id: int | None = None
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()  # the most likely tokens (id, logprob), when asked for


@dataclass(frozen=True)
class ReasoningDelta:
    """Reasoning, apart from the reply: a server's `reasoning_content` deltas, or the text between
    `<think>` and `</think>`. Shown apart, recorded in its own field, never sent back to the model."""

    text: str


@dataclass(frozen=True)
class Done:
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_s: float | None = None  # from request to first token
    total_s: float = 0.0
    stop_sequence: str | None = None  # which stop sequence ended it, if one did
    reasoning_s: float | None = None  # from the first reasoning to the first reply text; None: no reasoning
    # An endpoint's logprobs when they were asked for and it gave them, a token each in OpenAI's
    # chat shape ({token, logprob, bytes, top_logprobs}); None: none given.
    logprobs: tuple[dict, ...] | None = None


Event = Union[TextDelta, ReasoningDelta, Done]
# A generator, not any iterator: it promises `close()`, which is how a caller cancels a reply.
TokenStream = Generator[Event, None, None]


class ReplyWriter(Protocol):
    """Where a reply is streamed: the terminal renderer, the plain writer for pipes, or a
    collector. Used as a context manager: leaving it finishes what was shown."""

    def __enter__(self) -> ReplyWriter: ...

    def write(self, text: str) -> None: ...

    def __exit__(self, *exc: object) -> None: ...


class ReasoningWriter(Protocol):
    """Where a thinking model's reasoning goes: dimmed above the reply on a terminal, stderr
    (`--show-reasoning`) or nowhere in a pipe, a field of a record. `close()` comes when the
    reply starts, or when the stream ends without one."""

    def write(self, text: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class Turn:
    """One exchange. `status` says how the reply ended: complete, length (at the max-new-tokens
    limit: /continue goes on, even after the session is reopened), cut (Ctrl-C) or error."""

    user: str
    assistant: str = ""
    status: Literal["complete", "length", "cut", "error"] = "complete"
    model: str | None = None  # the model that wrote the reply (None: a session saved before this was kept)
    # Sources attached in the chat (/file, /run, -f): "name (N tokens)" each; their blocks open
    # `user`, whose own words start at `words_at`. /history shows the names, not the blocks.
    attached: tuple[str, ...] | None = None
    words_at: int | None = None

    @property
    def words(self) -> str:
        """What the user typed, without the attached sources' blocks."""
        return self.user[self.words_at :] if self.words_at else self.user


ConstraintKind = Literal["json_schema", "json", "regex", "gbnf"]


@dataclass(frozen=True)
class Constraint:
    """What shape the reply must have. Each backend passes it on in its own way (llama.cpp
    grammar, TGI `grammar`, OpenAI `response_format`) or refuses it with a clear error.

    kind "json_schema": `value` is the schema (a dict); "json": any JSON object (`value` None);
    "regex": `value` is the pattern; "gbnf": `value` is a llama.cpp grammar's text."""

    kind: ConstraintKind
    value: Any = None


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7  # 0 means greedy
    max_new_tokens: int = 512
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0  # OpenAI's: subtracted per earlier occurrence (last 64 tokens, local model)
    presence_penalty: float = 0.0
    typical_p: float = 1.0  # locally typical sampling; 1.0 is off
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)  # in addition to the format's own
    constraint: Constraint | None = None  # structured output; None: free text
    logprobs: int | None = None  # an endpoint asked for each token's logprob and this many alternatives

    def with_changes(self, **changes: Any) -> SamplingParams:
        return replace(self, **changes)


@dataclass(frozen=True)
class SentPrompt:
    """What a scripted model was sent: the chat messages (format "chat") or the Falcon-style text
    prompt (format "falcon"), and the sampling values the reply was asked with."""

    messages: tuple[dict[str, str], ...]  # () with format "falcon"
    text: str  # "" with format "chat"
    params: SamplingParams


@dataclass
class Script:
    """A scripted model's part (backend "scripted", for tests, as llm's MockModel): the replies
    it gives, one per prompt in turn, and every prompt it was sent. Shared by reference, so the
    test that wrote it reads what the model was sent."""

    replies: list[str] = field(default_factory=list)
    prompts: list[SentPrompt] = field(default_factory=list)

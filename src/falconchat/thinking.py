"""Reasoning apart from the reply: `<think>…</think>` at the start of the text becomes
`ReasoningDelta` events, and the time spent reasoning goes on `Done.reasoning_s`.

Servers that send reasoning in its own field (`reasoning_content`) produce
`ReasoningDelta` themselves; this passes those through and times them too. A tag
may arrive split across tokens ("<th", "ink>"): text that could be the start of
a tag is held back until the next token decides.

gpt-oss (OpenAI's "harmony" format) does not use `<think>`: its reply is channels,
`<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…`.
The analysis channel is reasoning, the final one the reply; the headers are neither.
(llama.cpp does not show `<|end|>`, a control token, so `<|start|>` also ends a message.)

The reply's first text says which: `_Opening` holds it until it can tell, then hands the
rest to a `_Think` or a `_Harmony` parser, or lets a plain reply through untouched. A
parser turns text into pieces, `(REASONING, text)` or `(REPLY, text)`; once it has reached
the reply, the stream's events pass through as they came (token ids and logprobs kept).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import replace
from typing import Protocol

from falconchat.types import Done, Event, ReasoningDelta, TextDelta, TokenStream

OPEN, CLOSE = "<think>", "</think>"
CHANNEL, MESSAGE = "<|channel|>", "<|message|>"  # a harmony header: <|channel|>NAME<|message|>
HARMONY_ENDS = ("<|end|>", "<|start|>")
LONGEST_HEADER = 200  # text after <|channel|> with no <|message|> this long is not a header

REASONING, REPLY = True, False
Piece = tuple[bool, str]  # (REASONING or REPLY, text); (REASONING, "") says reasoning began


def separate_reasoning(events: Iterator[Event]) -> TokenStream:
    """The stream with the reply's reasoning as `ReasoningDelta`s, and `Done.reasoning_s` set."""
    split = _Opening()
    clock = _Clock()
    field_end = ""  # the last character of reasoning sent in its own field (reasoning_content)
    with closing(events):  # type: ignore[type-var]  # a TokenStream, whose close() it promises
        for event in events:
            if isinstance(event, Done):
                yield from clock.deltas(split.finish())
                yield clock.stamp(event)
                return
            if isinstance(event, ReasoningDelta):
                clock.reasoned()
                field_end = event.text[-1:] or field_end
                yield event
            elif split.answering:
                if event.text:
                    clock.answered()
                yield event
            else:
                for parsed in clock.deltas(split.feed(event.text), event):
                    if isinstance(parsed, ReasoningDelta) and field_end:
                        if not field_end.isspace():  # the field's reasoning, then <think>'s: not glued together
                            yield ReasoningDelta("\n")
                        field_end = ""
                    yield parsed


class _Parser(Protocol):
    @property
    def answering(self) -> bool: ...  # reached the reply: the rest of the stream is reply

    def feed(self, text: str) -> Iterator[Piece]: ...

    def finish(self) -> Iterator[Piece]: ...  # the stream ended: what was held back


class _Clock:
    """When reasoning began, and when the reply after it began: `Done.reasoning_s`."""

    def __init__(self) -> None:
        self.reasoning_at: float | None = None
        self.answer_at: float | None = None

    def reasoned(self) -> None:
        if self.reasoning_at is None:
            self.reasoning_at = time.monotonic()

    def answered(self) -> None:
        if self.answer_at is None and self.reasoning_at is not None:
            self.answer_at = time.monotonic()

    def deltas(self, pieces: Iterable[Piece], event: TextDelta | None = None) -> Iterator[Event]:
        """The pieces as events, timed; reply text keeps the token id and logprob of `event`."""
        for reasoning, text in pieces:
            if reasoning:
                self.reasoned()
                if text:
                    yield ReasoningDelta(text)
            elif text:
                self.answered()
                yield TextDelta(text, event.token_id, event.logprob) if event else TextDelta(text)

    def stamp(self, done: Done) -> Done:
        if self.reasoning_at is None:
            return done
        return replace(done, reasoning_s=(self.answer_at or time.monotonic()) - self.reasoning_at)


class _Opening:
    """Before the reply's first text: `<think>`, a harmony header, or a plain reply? Held until
    it can tell (leading blanks, or what could be the start of a tag), then handed on."""

    def __init__(self) -> None:
        self.pending = ""
        self.parser: _Parser | None = None
        self.plain = False

    @property
    def answering(self) -> bool:
        return self.plain or (self.parser is not None and self.parser.answering)

    def feed(self, text: str) -> Iterator[Piece]:
        if self.parser is not None:
            yield from self.parser.feed(text)
            return
        self.pending += text
        stripped = self.pending.lstrip()
        if stripped.startswith(OPEN):
            self.parser = _Think()
            yield REASONING, ""
            yield from self.parser.feed(stripped[len(OPEN) :])
        elif stripped.startswith(CHANNEL):
            self.parser = _Harmony()
            yield from self.parser.feed(stripped)
        elif not (OPEN.startswith(stripped) or CHANNEL.startswith(stripped)):  # not the start of a tag
            self.plain = True
            text, self.pending = self.pending, ""
            yield REPLY, text

    def finish(self) -> Iterator[Piece]:
        if self.parser is not None:
            yield from self.parser.finish()
        else:
            yield REPLY, self.pending


class _Think:
    """After `<think>`: reasoning up to `</think>`, the blank after it (neither), then the reply."""

    def __init__(self) -> None:
        self.state = "thinking"  # thinking, after (the tag closed), answer
        self.pending = ""

    @property
    def answering(self) -> bool:
        return self.state == "answer"

    def feed(self, text: str) -> Iterator[Piece]:
        self.pending += text
        if self.state == "thinking":
            end = self.pending.find(CLOSE)
            if end < 0:
                ready, self.pending = _hold_back(self.pending, (CLOSE,))
                yield REASONING, ready
                return
            yield REASONING, self.pending[:end]
            self.state, self.pending = "after", self.pending[end + len(CLOSE) :]
        self.pending = self.pending.lstrip()  # after: the blank line between the two is neither
        if self.pending:
            self.state = "answer"
            text, self.pending = self.pending, ""
            yield REPLY, text

    def finish(self) -> Iterator[Piece]:
        yield (REASONING if self.state == "thinking" else REPLY), self.pending


class _Harmony:
    """Channels: a header `<|channel|>NAME<|message|>` (neither), then its message up to
    `<|end|>` or `<|start|>`. The analysis channel is reasoning; another one is the reply."""

    def __init__(self) -> None:
        self.state = "header"  # header, analysis (inside its message), answer
        self.pending = ""

    @property
    def answering(self) -> bool:
        return self.state == "answer"

    def feed(self, text: str) -> Iterator[Piece]:
        self.pending += text
        while self.state != "answer":
            if self.state == "header":
                if not self._header_read():
                    return
                if self.state == "analysis":
                    yield REASONING, ""
            else:
                ready, ended = self._analysis_read()
                yield REASONING, ready
                if not ended:
                    return
        if self.pending:
            text, self.pending = self.pending, ""
            yield REPLY, text

    def _header_read(self) -> bool:
        """Past the header (or found it is none: the reply); False: wait for more text."""
        end = self.pending.find(MESSAGE)
        if end < 0:
            if len(self.pending) <= LONGEST_HEADER:
                return False
            self.state = "answer"  # not a header after all
            return True
        header, self.pending = self.pending[:end], self.pending[end + len(MESSAGE) :]
        self.state = "analysis" if "analysis" in header else "answer"
        return True

    def _analysis_read(self) -> tuple[str, bool]:
        """(the reasoning ready, whether its message ended)."""
        ends = [at for at in (self.pending.find(tag) for tag in HARMONY_ENDS) if at >= 0]
        if not ends:
            ready, self.pending = _hold_back(self.pending, HARMONY_ENDS)
            return ready, False
        ready, self.pending = self.pending[: min(ends)], self.pending[min(ends) :]
        self.state = "header"
        return ready, True

    def finish(self) -> Iterator[Piece]:
        if self.state == "analysis":  # an unfinished header is neither
            yield REASONING, self.pending


def _hold_back(text: str, tags: tuple[str, ...]) -> tuple[str, str]:
    """(the text that is ready, the end that could begin one of the tags: held back)."""
    keep = max(_partial_tag(text, tag) for tag in tags)
    return text[: len(text) - keep], text[len(text) - keep :]


def _partial_tag(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0

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
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace

from falconchat.types import Done, Event, ReasoningDelta, TextDelta, TokenStream

OPEN, CLOSE = "<think>", "</think>"
CHANNEL, MESSAGE = "<|channel|>", "<|message|>"  # a harmony header: <|channel|>NAME<|message|>
HARMONY_ENDS = ("<|end|>", "<|start|>")
LONGEST_HEADER = 200  # text after <|channel|> with no <|message|> this long is not a header


def separate_reasoning(events: Iterator[Event]) -> TokenStream:
    # start: before any reply text; thinking: inside <think>; after: just closed; answer;
    # header: inside a harmony header; analysis: inside a harmony analysis message
    state = "start"
    pending = ""
    reasoning_at: float | None = None  # when the first reasoning arrived
    answer_at: float | None = None  # when the first reply text after it arrived

    def reasoned() -> None:
        nonlocal reasoning_at
        if reasoning_at is None:
            reasoning_at = time.monotonic()

    def answered() -> None:
        nonlocal answer_at
        if answer_at is None and reasoning_at is not None:
            answer_at = time.monotonic()

    with closing(events):  # type: ignore[type-var]  # a TokenStream, whose close() it promises
        for event in events:
            if isinstance(event, Done):
                if pending:
                    if state in ("thinking", "analysis"):
                        yield ReasoningDelta(pending)
                    elif state != "header":  # an unfinished header is neither
                        yield TextDelta(pending)
                if reasoning_at is not None:
                    event = replace(event, reasoning_s=(answer_at or time.monotonic()) - reasoning_at)
                yield event
                return
            if isinstance(event, ReasoningDelta):
                reasoned()
                yield event
                continue
            if state == "answer":
                if event.text:
                    answered()
                yield event
                continue
            pending += event.text
            while pending:
                if state == "start":
                    stripped = pending.lstrip()
                    if stripped.startswith(OPEN):
                        state, pending = "thinking", stripped[len(OPEN) :]
                        reasoned()
                        continue
                    if stripped.startswith(CHANNEL):
                        state, pending = "header", stripped
                        continue
                    if OPEN.startswith(stripped) or CHANNEL.startswith(stripped):  # the start of a tag: wait
                        break
                    state = "answer"
                elif state == "header":
                    end = pending.find(MESSAGE)
                    if end < 0:
                        if len(pending) > LONGEST_HEADER:
                            state = "answer"  # not a header after all
                            continue
                        break
                    header, pending = pending[:end], pending[end + len(MESSAGE) :]
                    state = "analysis" if "analysis" in header else "answer"
                    if state == "analysis":
                        reasoned()
                    continue
                elif state == "analysis":
                    ends = [at for at in (pending.find(tag) for tag in HARMONY_ENDS) if at >= 0]
                    if ends:
                        if pending[: min(ends)]:
                            yield ReasoningDelta(pending[: min(ends)])
                        state, pending = "header", pending[min(ends) :]
                        continue
                    keep = max(_partial_tag(pending, tag) for tag in HARMONY_ENDS)
                    ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
                    if ready:
                        yield ReasoningDelta(ready)
                    break
                elif state == "thinking":
                    end = pending.find(CLOSE)
                    if end >= 0:
                        if pending[:end]:
                            yield ReasoningDelta(pending[:end])
                        state, pending = "after", pending[end + len(CLOSE) :]
                        continue
                    keep = _partial_tag(pending, CLOSE)
                    ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
                    if ready:
                        yield ReasoningDelta(ready)
                    break
                elif state == "after":  # the blank line between the reasoning and the reply is neither
                    pending = pending.lstrip()
                    if not pending:
                        break
                    state = "answer"
                if state == "answer":
                    answered()
                    yield TextDelta(pending, event.token_id, event.logprob)
                    pending = ""


def _partial_tag(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0

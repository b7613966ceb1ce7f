"""The Falcon-style prompt: formatting, stop sequences, trimming to a token budget,
and the stream filter that keeps stop text and a reply's leading blank lines off screen."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass

from falconchat.types import Done, ReasoningDelta, TextDelta, TokenStream, Turn

FALCON_STOPS: tuple[str, ...] = ("\nUser:", "<|endoftext|>")


def system_line(system: str) -> str:
    return f"System:{system}\n" if system else ""


def turn_text(turn: Turn) -> str:
    return f"User: {turn.user}\nAssistant: {turn.assistant}\n"


def falcon_prompt(system: str, history: Sequence[Turn], message: str) -> str:
    """
    System:{system}
    User: {user 1}
    Assistant: {reply 1}
    User: {message}
    Assistant:
    """
    return system_line(system) + "".join(turn_text(t) for t in history) + f"User: {message}\nAssistant:"


@dataclass(frozen=True)
class FittedPrompt:
    text: str
    dropped_turns: int  # oldest turns left out to fit the budget
    prompt_tokens: int
    messages: tuple[dict[str, str], ...] = ()  # the same exchange as chat messages, for chat-API backends


def chat_messages(system: str, history: Sequence[Turn], message: str) -> tuple[dict[str, str], ...]:
    messages = [{"role": "system", "content": system}] if system else []
    for turn in history:
        messages += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.assistant}]
    return (*messages, {"role": "user", "content": message})


def messages_text(messages: Sequence[dict]) -> str:
    """Chat messages as plain text, for a token estimate where no template is known."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages)


class PromptTooLong(ValueError):
    def __init__(self, needed: int, budget: int):
        super().__init__(f"{needed} tokens needed, {budget} available")
        self.needed, self.budget = needed, budget


CountMessages = Callable[[Sequence[dict]], int]


def fit_prompt(
    system: str,
    history: Sequence[Turn],
    message: str,
    count_tokens: Callable[[str], int],
    budget: int,
    count_messages: CountMessages | None = None,
) -> FittedPrompt:
    """Leave out the oldest turns until the prompt fits `budget` tokens.

    The system line and the new message always stay. Each part is counted once
    (tokenising a whole prompt per candidate would be quadratic); a final count
    of the chosen prompt confirms it — of the chat messages with `count_messages`
    (a model's own template writes them, with its own markers), else of the text.
    """
    return _fit(
        history,
        lambda kept: falcon_prompt(system, kept, message),
        lambda kept: chat_messages(system, kept, message),
        count_tokens,
        budget,
        count_messages,
    )


def _fit(
    history: Sequence[Turn],
    make_text: Callable[[Sequence[Turn]], str],
    make_messages: Callable[[Sequence[Turn]], tuple[dict[str, str], ...]],
    count_tokens: Callable[[str], int],
    budget: int,
    count_messages: CountMessages | None,
) -> FittedPrompt:
    counted: dict[int, int] = {}

    def count(start: int) -> int:  # the prompt's tokens with the turns from `start` on
        if start not in counted:
            kept = history[start:]
            counted[start] = count_messages(make_messages(kept)) if count_messages else count_tokens(make_text(kept))
        return counted[start]

    fixed_tokens = count(len(history))
    if fixed_tokens > budget:
        raise PromptTooLong(fixed_tokens, budget)
    sizes = [count_tokens(turn_text(t)) for t in history]
    start, total = 0, fixed_tokens + sum(sizes)
    while total > budget and start < len(history):
        total -= sizes[start]
        start += 1
    while True:
        tokens = count(start)
        if tokens <= budget:
            break
        if start == len(history):
            raise PromptTooLong(tokens, budget)
        start += 1
    kept = history[start:]
    return FittedPrompt(text=make_text(kept), dropped_turns=start, prompt_tokens=tokens, messages=make_messages(kept))


def starts_reply(prompt: str) -> bool:
    """Whether the prompt ends at "Assistant:", so the first token's space is the separator
    (a continued reply ends mid-text, and its next space belongs to the text)."""
    return prompt.endswith("Assistant:")


def fit_continuation(
    system: str,
    history: Sequence[Turn],
    count_tokens: Callable[[str], int],
    budget: int,
    count_messages: CountMessages | None = None,
) -> FittedPrompt:
    """The prompt that lets the model go on with the last turn's reply where it stopped: the
    text ends inside it, and the messages end with it as an open assistant message."""
    *earlier, last = history
    return _fit(
        earlier,
        lambda kept: falcon_prompt(system, kept, last.user) + " " + last.assistant,
        lambda kept: (*chat_messages(system, kept, last.user), {"role": "assistant", "content": last.assistant}),
        count_tokens,
        budget,
        count_messages,
    )


def stop_sequences(extra: Sequence[str] = ()) -> list[str]:
    return list(dict.fromkeys([*FALCON_STOPS, *extra]))


def clean_reply(
    events: TokenStream, stops: Sequence[str], *, drop_leading_space: bool = True, after: str | None = None
) -> TokenStream:
    """What the user sees of a reply: never a stop sequence, never leading blank lines.

    `after` is the text prompt the reply follows. When it ends mid-reply (/continue),
    its end takes part in stop detection — "\nUser:" may begin in the old reply and
    end in the new text — and nothing of the new text is dropped. A fresh reply
    (no `after`, or a prompt ending at "Assistant:") starts at its first visible
    character: leading blank lines go, and with `drop_leading_space` (implied by
    such a prompt) the one space after "Assistant:".

    Text that could be the start of a stop sequence is held back until the next
    token decides. When a stop sequence appears, the upstream stream is closed
    (so the engine stops) and the reply ends with finish_reason "stop".
    """
    fresh = after is None or starts_reply(after)
    if after is not None:
        drop_leading_space = fresh
    longest = max((len(s) for s in stops), default=1) - 1
    tail = after[-longest:] if after is not None and not fresh and longest else ""
    lead = _Lead(drop_leading_space) if fresh else None
    pending = ""
    started = time.monotonic()
    emitted_tokens = 0
    first_token_s: float | None = None

    def shown(text: str) -> str:
        return lead.take(text) if lead is not None else text

    with closing(events):
        try:
            for event in events:
                if isinstance(event, Done):
                    text = shown(pending)
                    if text:
                        yield TextDelta(text)
                    yield event
                    return
                if isinstance(event, ReasoningDelta):  # not the reply: no stop sequence, no leading space
                    yield event
                    continue
                if not event.text:
                    continue
                if first_token_s is None:
                    first_token_s = time.monotonic() - started
                emitted_tokens += 1
                pending += event.text
                window = tail + pending
                hit = _find_stop(window, stops, beyond=len(tail))
                if hit is not None:
                    events.close()  # stop the engine now, not when the consumer next asks
                    text = shown(pending[: max(0, hit - len(tail))])
                    if text:
                        yield TextDelta(text)
                    yield Done(
                        "stop",
                        completion_tokens=emitted_tokens,
                        first_token_s=first_token_s,
                        total_s=time.monotonic() - started,
                    )
                    return
                keep = min(_partial_stop_len(window, stops), len(pending))
                ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
                tail = (tail + ready)[-longest:] if longest else ""
                text = shown(ready)
                if text:
                    yield TextDelta(text, event.token_id, event.logprob)
        except Exception:
            # The stream broke: what arrived but was held back is still part of the reply.
            text = shown(pending)
            if text:
                yield TextDelta(text)
            raise


class _Lead:
    """A fresh reply's leading whitespace, held until its first visible character: then
    blank lines are dropped (everything through the last line break), or, with none, the
    one separator space when asked."""

    _BLANK_LINES = re.compile(r"[ \t\r\n]*\n")

    def __init__(self, drop_space: bool):
        self.drop_space = drop_space
        self.held: str | None = ""  # None once the first visible character has passed

    def take(self, text: str) -> str:
        if self.held is None:
            return text
        held = self.held + text
        if not held.strip():
            self.held = held
            return ""
        self.held = None
        blank = self._BLANK_LINES.match(held)
        if blank:
            return held[blank.end() :]
        return held[1:] if self.drop_space and held.startswith(" ") else held


def _find_stop(text: str, stops: Sequence[str], beyond: int = 0) -> int | None:
    """Where the first stop sequence that ends past `beyond` starts."""
    positions = [i for i in (text.find(s, max(0, beyond - len(s) + 1)) for s in stops if s) if i >= 0]
    return min(positions) if positions else None


def _partial_stop_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop sequence."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best

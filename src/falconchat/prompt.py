"""The Falcon-style prompt: formatting, stop sequences, trimming to a token budget,
and the stream filter that keeps stop text and the first token's space off screen."""

from __future__ import annotations

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


class PromptTooLong(ValueError):
    def __init__(self, needed: int, budget: int):
        super().__init__(f"{needed} tokens needed, {budget} available")
        self.needed, self.budget = needed, budget


def fit_prompt(
    system: str,
    history: Sequence[Turn],
    message: str,
    count_tokens: Callable[[str], int],
    budget: int,
) -> FittedPrompt:
    """Leave out the oldest turns until the prompt fits `budget` tokens.

    The system line and the new message always stay. Each part is counted once
    (tokenising a whole prompt per candidate would be quadratic); a final count
    of the chosen prompt confirms it.
    """
    fixed = system_line(system) + f"User: {message}\nAssistant:"
    fixed_tokens = count_tokens(fixed)
    if fixed_tokens > budget:
        raise PromptTooLong(fixed_tokens, budget)
    sizes = [count_tokens(turn_text(t)) for t in history]
    start, total = 0, fixed_tokens + sum(sizes)
    while total > budget and start < len(history):
        total -= sizes[start]
        start += 1
    while True:
        text = falcon_prompt(system, history[start:], message)
        tokens = count_tokens(text)
        if tokens <= budget:
            break
        if start == len(history):
            raise PromptTooLong(tokens, budget)
        start += 1
    return FittedPrompt(
        text=text, dropped_turns=start, prompt_tokens=tokens, messages=chat_messages(system, history[start:], message)
    )


def starts_reply(prompt: str) -> bool:
    """Whether the prompt ends at "Assistant:", so the first token's space is the separator
    (a continued reply ends mid-text, and its next space belongs to the text)."""
    return prompt.endswith("Assistant:")


def fit_continuation(
    system: str, history: Sequence[Turn], count_tokens: Callable[[str], int], budget: int
) -> FittedPrompt:
    """The prompt that lets the model go on with the last turn's reply where it stopped."""
    *earlier, last = history
    fitted = fit_prompt(system, earlier, last.user + "\nAssistant: " + last.assistant, count_tokens, budget)
    # fit_prompt ends with "User: {message}\nAssistant:"; here the message carried the open reply.
    text = fitted.text[: -len("\nAssistant:")]
    return FittedPrompt(text=text, dropped_turns=fitted.dropped_turns, prompt_tokens=fitted.prompt_tokens)


def stop_sequences(extra: Sequence[str] = ()) -> list[str]:
    return list(dict.fromkeys([*FALCON_STOPS, *extra]))


def clean_reply(events: TokenStream, stops: Sequence[str], *, drop_leading_space: bool = True) -> TokenStream:
    """Drop the first token's leading space (the one after "Assistant:"); never show a stop sequence.

    Text that could be the start of a stop sequence is held back until the next
    token decides. When a stop sequence appears, the upstream stream is closed
    (so the engine stops) and the reply ends with finish_reason "stop".
    """
    pending = ""
    first = True
    started = time.monotonic()
    emitted_tokens = 0
    first_token_s: float | None = None
    with closing(events):
        try:
            for event in events:
                if isinstance(event, Done):
                    if pending:
                        yield TextDelta(pending)
                    yield event
                    return
                if isinstance(event, ReasoningDelta):  # not the reply: no stop sequence, no leading space
                    yield event
                    continue
                text = event.text
                if first and text:
                    if drop_leading_space and text.startswith(" "):
                        text = text[1:]
                    first = False
                if not text and not pending:
                    continue
                if first_token_s is None:
                    first_token_s = time.monotonic() - started
                emitted_tokens += 1
                pending += text
                hit = _find_stop(pending, stops)
                if hit is not None:
                    events.close()  # stop the engine now, not when the consumer next asks
                    if hit:
                        yield TextDelta(pending[:hit])
                    yield Done(
                        "stop",
                        completion_tokens=emitted_tokens,
                        first_token_s=first_token_s,
                        total_s=time.monotonic() - started,
                    )
                    return
                keep = _partial_stop_len(pending, stops)
                ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
                if ready:
                    yield TextDelta(ready, event.token_id, event.logprob)
        except Exception:
            # The stream broke: what arrived but was held back is still part of the reply.
            if pending:
                yield TextDelta(pending)
            raise


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    positions = [i for i in (text.find(s) for s in stops) if i >= 0]
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

"""The in-memory conversation: system message, turns, and recording a reply stream into it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from falconchat.prompt import CountMessages, FittedPrompt, fit_continuation, fit_prompt
from falconchat.types import Done, TextDelta, TokenStream, Turn

# How a reply that reached its Done is kept: "length" can be continued, even after --resume.
_STATUS_BY_FINISH: dict[str, Literal["complete", "length", "cut"]] = {"cancelled": "cut", "length": "length"}


@dataclass
class Conversation:
    system: str = ""
    turns: list[Turn] = field(default_factory=list)

    def clear(self) -> None:
        self.turns.clear()

    def undo(self) -> Turn | None:
        return self.turns.pop() if self.turns else None

    @property
    def last(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def prompt_for(
        self,
        message: str,
        count_tokens: Callable[[str], int],
        budget: int,
        count_messages: CountMessages | None = None,
    ) -> FittedPrompt:
        """The prompt for `message` (Falcon-style text and chat messages), oldest turns left out
        to fit `budget` — measured as messages with `count_messages`, else as text."""
        return fit_prompt(self.system, self.turns, message, count_tokens, budget, count_messages)

    def prompt_to_continue(
        self, count_tokens: Callable[[str], int], budget: int, count_messages: CountMessages | None = None
    ) -> FittedPrompt:
        """The prompt that has the model go on with the last reply where it stopped."""
        return fit_continuation(self.system, self.turns, count_tokens, budget, count_messages)

    def record_continuation(self, events: TokenStream, *, model: str | None = None) -> TokenStream:
        """Like `record`, appending to the last turn's reply (which is untouched until the stream starts)."""
        turn = self.turns.pop()
        yield from self.record(turn.user, events, continuing=turn, model=model)

    def record(
        self, message: str, events: TokenStream, *, continuing: Turn | None = None, model: str | None = None
    ) -> TokenStream:
        """Pass `events` through and keep the exchange, however it ends.

        A reply cut by Ctrl-C (the stream closed, or KeyboardInterrupt raised
        through it) is kept as "cut"; one broken by an error as "error". What
        was shown is never lost. A request that fails before any text arrives
        leaves the conversation as it was: a message with no reply is not sent
        again as context (the REPL's input history still has it).
        """
        turn = Turn(user=message, status="cut", model=model or (continuing.model if continuing else None))
        self.turns.append(turn)
        parts: list[str] = [continuing.assistant if continuing else ""]
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, Done):
                    turn.status = _STATUS_BY_FINISH.get(event.finish_reason, "complete")
                yield event
        except Exception:
            turn.status = "error"
            if not any(parts[1:]):  # nothing arrived: undo the exchange
                self.turns[:] = [t for t in self.turns if t is not turn]
                if continuing is not None:
                    self.turns.append(continuing)
            raise
        except BaseException:  # closed, Ctrl-C, a signal: the user cut it short
            if turn.status not in ("complete", "length"):  # closing after Done changes nothing
                turn.status = "cut"
            raise
        finally:
            turn.assistant = "".join(parts)
            events.close()

"""A scripted model, for tests (llm's MockModel): it answers with the replies its `Script` holds,
one per prompt in turn, and records every prompt it was sent. It is a backend like the others
(a row in registry.py, opened by `open_backend`), so everything above it — the conversation,
the exchange, the structured-output check — runs as it does for a real model.

It passes no constraint on: a reply that does not fit a schema is caught by the same check
(`structured.check_reply`) that catches a server that ignored one."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence

from falconchat.config_models import ModelSpec
from falconchat.errors import UsageError
from falconchat.prompt import messages_text
from falconchat.types import Done, FinishReason, SamplingParams, Script, SentPrompt, TextDelta, TokenStream

DEFAULT_CONTEXT = 4096
# A "token" of a scripted reply: a word with the space before it (so the reply streams in pieces).
PIECE = re.compile(r"\s*\S+\s*$|\s*\S+")
_LOCK = threading.Lock()  # `batch -j` shares one script between worker threads


class ScriptedBackend:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name = spec.name
        self.script = spec.script if spec.script is not None else Script()
        self.prompt_format = spec.format  # "chat": messages are recorded; "falcon": the text prompt
        self.takes_messages = spec.format == "chat"
        self.sees_images = False  # scripted replies: nothing looks at an image

    def describe(self) -> str:
        return f"{self.name} (scripted)"

    @property
    def context_length(self) -> int:
        return self.spec.context_length or DEFAULT_CONTEXT

    def count_tokens(self, text: str) -> int:
        return len(PIECE.findall(text))

    def count_message_tokens(self, messages: Sequence[dict]) -> int:
        return self.count_tokens(messages_text(messages))

    def check(self) -> str:
        left = len(self.script.replies)
        return f"ok ({left} scripted {'reply' if left == 1 else 'replies'} left)"

    def warm_up(self) -> None:
        """Nothing to load."""

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        return self._answer(SentPrompt((), prompt, params), params)

    def stream_messages(self, messages: Sequence[dict], params: SamplingParams) -> TokenStream:
        sent = tuple({"role": m["role"], "content": m["content"]} for m in messages)
        return self._answer(SentPrompt(sent, "", params), params)

    def close(self) -> None:
        """Nothing to release: the script stays with whoever wrote it."""

    def _answer(self, sent: SentPrompt, params: SamplingParams) -> TokenStream:
        """The prompt is recorded and the next reply taken when asked, not when first read."""
        with _LOCK:
            self.script.prompts.append(sent)
            reply = self.script.replies.pop(0) if self.script.replies else None
        return self._events(reply, params, self.count_tokens(sent.text or messages_text(sent.messages)))

    def _events(self, reply: str | None, params: SamplingParams, prompt_tokens: int) -> TokenStream:
        if reply is None:
            asked = len(self.script.prompts)
            raise UsageError(f"the scripted model {self.name!r} has no reply left for prompt {asked}")
        started = time.monotonic()
        text, stop = _until_stop(reply, params.stop)
        pieces = PIECE.findall(text)
        finish: FinishReason = "length" if len(pieces) > params.max_new_tokens else "stop"
        pieces = pieces[: params.max_new_tokens]
        first: float | None = None
        for piece in pieces:
            first = time.monotonic() - started if first is None else first
            yield TextDelta(piece)
        yield Done(
            finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(pieces),
            first_token_s=first,
            total_s=time.monotonic() - started,
            stop_sequence=stop if finish == "stop" else None,
        )


def _until_stop(reply: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """The reply up to the first stop sequence in it (as a server cuts it), and that sequence."""
    found = [(reply.find(stop), stop) for stop in stops if stop in reply]
    if not found:
        return reply, None
    at, stop = min(found)
    return reply[:at], stop

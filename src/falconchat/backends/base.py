"""What every backend offers the layers above it: callers use these names and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from falconchat.types import SamplingParams, TokenStream


class Backend(Protocol):
    name: str

    @property
    def prompt_format(self) -> str:
        """The format in use, never "auto": "falcon" (falconchat's text prompt), "native" (the
        model's own chat template) or "chat" (the server's). A local model's "auto" is decided
        from the model file, so asking may load it."""
        ...

    @property
    def takes_messages(self) -> bool:
        """True: the conversation goes as chat messages (`stream_messages`), formatted by the
        server or the model's own template; False: as one Falcon-style text prompt (`stream`)."""
        ...

    def describe(self) -> str:
        """A short, safe description for headers and errors: "smollm2 (bundled, local)"."""
        ...

    @property
    def context_length(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def count_message_tokens(self, messages: Sequence[dict]) -> int:
        """The tokens of the prompt these chat messages make (where `takes_messages`)."""
        ...

    def check(self) -> str:
        """A quick look that loads nothing: "ok (…)", or raises the error a user would meet."""
        ...

    def warm_up(self) -> None:
        """Load what is slow to load now (a model file), so a broken one fails before the first message."""
        ...

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        """Stream the reply to a full text prompt. Closing the iterator stops generation."""
        ...

    def stream_messages(self, messages: Sequence[dict], params: SamplingParams) -> TokenStream:
        """Stream the reply to chat messages (only where `takes_messages`). With format "native",
        a last assistant message is a reply cut short: the model goes on with it (/continue)."""
        ...

    def close(self) -> None: ...


class FormatDecidedOnLoad:
    """`prompt_format` and `takes_messages` of a model run in process: its "auto" becomes
    "native" (the model carries a chat template) or "falcon" when `load()` reads the model."""

    _format: str  # set by the backend: the spec's format, then what load() decided

    def load(self) -> object:
        raise NotImplementedError

    @property
    def prompt_format(self) -> str:
        """The format in use, never "auto": asking may load the model."""
        if self._format == "auto":
            self.load()
        return self._format

    @property
    def takes_messages(self) -> bool:
        return self.prompt_format == "native"

"""What every backend offers the layers above it: callers use these names and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from falconchat.types import SamplingParams, TokenStream

if TYPE_CHECKING:
    from falconchat.config_models import ModelSpec


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

    @property
    def sees_images(self) -> bool:
        """Images in a message (images.py: Markdown images with data URLs) reach a model that
        can see them: TGI's prompt syntax, OpenAI's image_url parts. False: refused before sending."""
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


class DecodeThreads(Protocol):
    """How many threads an in-process model decodes with (backends/threads.py ThreadPolicy;
    bench tries others)."""

    fixed: int | None  # a count set by the user, or None: measured
    cores: int  # the most it uses

    def threads(self) -> int:
        """The count to use now."""
        ...

    def due(self) -> bool:
        """Whether a running reply should ask `threads()` again."""
        ...


class InProcessModel(Backend, Protocol):
    """A model decoded in this process, token by token: what `serve` and `bench` use beyond
    `Backend`. The registry's `serves` entries implement it (backends/conformance.py checks)."""

    sequences: int  # requests decoded together; generate() may be called from that many threads
    thread_policy: DecodeThreads  # how many threads it decodes with (bench swaps it)

    def generate(
        self,
        prompt: str,
        params: SamplingParams,
        stops: Sequence[str] = (),
        *,
        logprobs: bool = False,
        should_stop: Callable[[], bool] | None = None,
        top_n: int = 0,
    ) -> TokenStream:
        """The raw token stream for a full text prompt: one TextDelta per token (with its id),
        stop text included; Done("stop") at an end-of-generation token or a stop in `stops`."""
        ...

    def tokens(self, text: str) -> list[int]:
        """The tokens `generate()` feeds the model for `text` (with the start token)."""
        ...

    def text(self, tokens: list[int]) -> str: ...

    def token_pieces(self, text: str) -> list[tuple[int, str, int, int]]:
        """(id, text, start, stop) per token, offsets in bytes of `text` in UTF-8."""
        ...

    def piece(self, token: int) -> str:
        """One token's text, as a top-token list shows it."""
        ...

    def eos(self) -> tuple[int, str]:
        """The end-of-generation token's id and text."""
        ...

    def prompt_logprobs(self, prompt: str) -> list[tuple[int, str, float | None]]:
        """(id, text, logprob) for each token `generate()` feeds for `prompt`; None for the first."""
        ...

    def native_prompt(self, messages: Sequence[dict], *, continue_last: bool = False) -> str:
        """The model's own chat template rendered for `messages`, ending with the assistant's header."""
        ...


class OpensInProcess(Protocol):
    """How an InProcessModel is built: from its spec, decoding `sequences` prompts together."""

    def __call__(self, spec: ModelSpec, sequences: int = 1) -> InProcessModel: ...


class FormatDecidedOnLoad:
    """`prompt_format` and `takes_messages` of a model run in process: its "auto" becomes
    "native" (the model carries a chat template) or "falcon" when `load()` reads the model."""

    _format: str  # set by the backend: the spec's format, then what load() decided
    sees_images = False  # a text-only model file here (no vision projector is loaded)

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

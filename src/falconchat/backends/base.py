"""What every backend offers the layers above it."""

from __future__ import annotations

from typing import Protocol

from falconchat.types import SamplingParams, TokenStream


class Backend(Protocol):
    name: str

    def describe(self) -> str:
        """A short, safe description for headers and errors: "smollm2 (bundled, local)"."""
        ...

    @property
    def context_length(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        """Stream the reply to a full prompt. Closing the iterator stops generation."""
        ...

    def close(self) -> None: ...

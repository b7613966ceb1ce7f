"""The bundled model (or any GGUF file) in process, through llama-cpp-python: loading it,
tokens and templates, and `generate()`'s stream, whose tokens come from the batching engine
(llama_batch.py, `sequences` > 1) or the single-sequence path (llama_single.py)."""

from __future__ import annotations

import codecs
import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from falconchat.backends.base import DecodeThreads, FormatDecidedOnLoad
from falconchat.backends.gguf import bundled_model_path, is_gguf
from falconchat.backends.grammar import compile_constraint
from falconchat.backends.hub import cached_model
from falconchat.backends.hub_names import is_hub_name
from falconchat.backends.llama_batch import BatchEngine
from falconchat.backends.llama_prompt_logprobs import prompt_logprobs
from falconchat.backends.llama_setup import silence_llama_logs, weights_not_repacked
from falconchat.backends.llama_single import SingleSequence, llama_errors
from falconchat.backends.templates import ends_open, render_chat_template
from falconchat.backends.threads import ThreadPolicy
from falconchat.config_models import ModelSpec
from falconchat.errors import ConfigError, InputError
from falconchat.prompt import clean_reply, stop_sequences
from falconchat.types import Done, FinishReason, SamplingParams, TextDelta, TokenStream

DEFAULT_CONTEXT = 4096
TOKENIZER_CONTEXT = 256  # the small context beside the batching engine
DEFAULT_SEQUENCE_CONTEXT = 2048  # each of the batching engine's sequences (its KV cache is per sequence)
CLOSE_WAIT_S = 10.0  # how long close() waits for a short call holding the model (tokenizing takes ms)


class LocalBackend(FormatDecidedOnLoad):
    """`sequences` > 1 decodes that many requests together (continuous batching, for
    `serve` and `batch`); generate() may then be called from many threads at once."""

    def __init__(self, spec: ModelSpec, sequences: int = 1):
        self.spec = spec
        self.name = spec.name
        self.sequences = sequences
        self._llm = None
        self._engine = None  # sequences > 1: the batching engine (llama_batch.py)
        self._single: SingleSequence | None = None  # sequences = 1: the single-sequence path (llama_single.py)
        self._lock = threading.Lock()
        # close() waits here until no thread holds the model (see `_held`).
        self._released = threading.Condition(self._lock)
        self._holders = 0
        self._closed = False
        self.thread_policy: DecodeThreads = ThreadPolicy(fixed=spec.threads)  # starts measuring the others' load
        self._format = spec.format  # "auto" becomes "native" or "falcon" when the model loads

    def describe(self) -> str:
        path = self.spec.model_path
        where = "bundled" if path is None else path if is_hub_name(path) else Path(path).name
        return f"{self.name} ({where}, local)"

    @property
    def model_path(self) -> Path:
        if is_hub_name(self.spec.model_path):  # hf:OWNER/REPO…: the Hub's cache, never the network
            return cached_model(self.spec.model_path)  # type: ignore[arg-type]
        return Path(self.spec.model_path).expanduser() if self.spec.model_path else bundled_model_path()

    def warm_up(self) -> None:
        self.load()

    def load(self):
        """Load the model once (thread-safe, so the REPL can warm it up in the background)."""
        with self._lock:
            return self._load_locked()

    def _load_locked(self):
        if self._closed:  # a thread still measuring for the toolbar as the chat ends
            raise ConfigError("the model is closed")
        if self._llm is None:
            llm = self._open()
            if self.sequences > 1:
                self._engine = self._open_engine(llm)
            else:
                self._single = SingleSequence(llm, self.thread_policy, self._threads)
            if self.spec.format == "auto":  # a model that carries a chat template answers best in it
                self._format = "native" if llm.metadata.get("tokenizer.chat_template") else "falcon"
            self._llm = llm
        return self._llm

    @contextmanager
    def _held(self):
        """The loaded model, held for a short call (tokenizing, a template): close() waits
        until every holder lets go. The chat's toolbar counts tokens in a thread of its own;
        a model freed under it crashed the process (SIGSEGV) as the chat ended."""
        with self._lock:
            llm = self._load_locked()
            self._holders += 1
        try:
            yield llm
        finally:
            with self._lock:
                self._holders -= 1
                self._released.notify_all()

    def _open(self):
        self.check()
        path = self.model_path
        import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)

        silence_llama_logs(llama_cpp)
        try:
            with weights_not_repacked(llama_cpp):
                return llama_cpp.Llama(
                    model_path=str(path),
                    # With the batching engine, this context is only for tokens and metadata.
                    n_ctx=self._context if self.sequences == 1 else TOKENIZER_CONTEXT,
                    n_threads=self._threads,
                    # Flash attention never materialises the attention matrix: less memory, faster on CPU.
                    flash_attn=True,
                    n_batch=256 if self.sequences == 1 else TOKENIZER_CONTEXT,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load model file {path}: {exc}") from None

    def _open_engine(self, llm):
        with llama_errors():
            return BatchEngine(llm, self.sequences, self._context, self.thread_policy)

    @property
    def _context(self) -> int:
        if self.spec.context_length:
            return self.spec.context_length
        return DEFAULT_CONTEXT if self.sequences == 1 else DEFAULT_SEQUENCE_CONTEXT

    @property
    def _threads(self) -> int:
        """The thread count a context starts with; the single-sequence path then adapts it per reply."""
        return self.thread_policy.fixed or self.thread_policy.cores

    @property
    def context_length(self) -> int:
        """The most tokens one conversation (prompt and reply) can hold: the size asked for,
        never llama.cpp's `n_ctx()`, which rounds it up to a multiple of 256 while
        llama-cpp-python sizes its token arrays to the size asked (a prompt in between
        crashed in `Llama.eval`)."""
        return self._context

    def check(self) -> str:
        """A quick look without loading: is the file there and a GGUF model?"""
        path = self.model_path
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}")
        if not is_gguf(path):
            raise ConfigError(f"not a GGUF model file: {path}")
        return f"ok ({path.stat().st_size / 1e6:.0f} MB file)"

    def count_tokens(self, text: str) -> int:
        with self._held() as llm:
            return len(llm.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=True))

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        stops = stop_sequences(params.stop)
        return clean_reply(self.generate(prompt, params, stops), stops, after=prompt)

    def count_message_tokens(self, messages: Sequence[dict]) -> int:
        return len(self.tokens(self.native_prompt(messages, continue_last=ends_open(messages))))

    def stream_messages(self, messages: Sequence[dict], params: SamplingParams) -> TokenStream:
        """Chat messages in the model's own template (format = "native"); a last assistant
        message is a reply to go on with: its end takes part in stop detection, as /continue's text."""
        continuing = ends_open(messages)
        prompt = self.native_prompt(messages, continue_last=continuing)
        stops = list(params.stop)
        events = self.generate(prompt, params, stops)
        return clean_reply(events, stops, drop_leading_space=False, after=prompt if continuing else None)

    def native_prompt(self, messages: Sequence[dict], *, continue_last: bool = False) -> str:
        """The model's template rendered for `messages`, ending with the assistant's header, or
        with `continue_last` inside the last (assistant) message."""

        with self._held() as llm:
            template = llm.metadata.get("tokenizer.chat_template")
            bos_token = llm.token_bos()
        if not template:
            raise ConfigError(f'{self.model_path.name} carries no chat template; use format = "falcon"')
        bos = self.text([bos_token])
        prompt = render_chat_template(
            template,
            messages,
            bos_token=bos,
            eos_token=self.eos()[1],
            thinking=self.spec.thinking,
            reasoning_effort=self.spec.reasoning_effort,
            continue_last=continue_last,
        )
        return prompt[len(bos) :] if bos and prompt.startswith(bos) else prompt  # generate() adds the BOS

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
        """The raw token stream: one TextDelta per token (with its id), stop text included.

        Ends with Done("stop") at an end-of-generation token or when the text
        contains one of `stops` (then `Done.stop_sequence` names it), or
        Done("length"). Closing it stops decoding before the next token;
        `should_stop` also stops the reading of a long prompt between batches
        (the stream then ends without a Done). `top_n` > 0 adds each step's most likely
        tokens to its TextDelta (`top`). `serve` uses this directly;
        `stream()` adds the chat's stop handling.
        """
        llm = self.load()
        started = time.monotonic()
        tokens = self.tokens(prompt)
        context = self.context_length
        max_new = min(params.max_new_tokens, context - len(tokens))
        if max_new < 1:
            raise InputError(f"the prompt is {len(tokens)} tokens; the model's context holds {context}")
        seed = params.seed if params.seed is not None else random.getrandbits(31)
        should_stop = should_stop or (lambda: False)
        grammar = self._grammar(llm, params)
        if self._engine is not None:
            sampled = self._engine.tokens(
                tokens,
                params,
                max_new,
                seed=seed,
                logprobs=logprobs,
                should_stop=should_stop,
                grammar=grammar,
                top_n=top_n,
            )
        else:
            assert self._single is not None  # loaded with the model when sequences = 1
            sampled = self._single.tokens(tokens, params, seed, (logprobs, top_n), should_stop, grammar)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        vocab = llm._model.vocab  # for llama_vocab_is_eog, as llama-cpp-python itself does
        import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)

        tail = ""  # the last few characters, to find stop sequences split across tokens
        longest_stop = max((len(s) for s in stops), default=0)
        first_token_s = None
        count = 0

        def done(reason: FinishReason, stop: str | None = None) -> Done:
            return Done(
                reason,
                prompt_tokens=len(tokens),
                completion_tokens=count,
                first_token_s=first_token_s,
                total_s=time.monotonic() - started,
                stop_sequence=stop,
            )

        # Closing the token source stops decoding at once (or cancels the engine's sequence).
        # A source that ends by itself was stopped by `should_stop`.
        with closing(sampled), llama_errors():
            for token, logprob, top in sampled:
                if first_token_s is None:
                    first_token_s = time.monotonic() - started
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    yield done("stop")
                    return
                count += 1
                text = decoder.decode(llm.detokenize([token]))
                yield TextDelta(text, token_id=token, logprob=logprob, top=top)
                if stops:
                    tail = (tail + text)[-(longest_stop + len(text)) :]
                    hit = next((s for s in stops if s in tail), None)
                    if hit is not None:
                        yield done("stop", hit)
                        return
                if count >= max_new:
                    yield done("length")
                    return

    def _grammar(self, llm, params: SamplingParams) -> str | None:
        """The GBNF grammar for `params.constraint` (an InputError before any decoding if it
        cannot be compiled); None for free text."""
        if params.constraint is None:
            return None

        return compile_constraint(params.constraint)

    def tokens(self, text: str) -> list[int]:
        """The tokens `generate()` feeds the model for `text` (with the start token)."""
        with self._held() as llm:
            return llm.tokenize(text.encode("utf-8", "replace"), add_bos=True, special=True)

    def text(self, tokens: list[int]) -> str:
        with self._held() as llm:
            return llm.detokenize(tokens, special=True).decode("utf-8", "replace")

    def token_pieces(self, text: str) -> list[tuple[int, str, int, int]]:
        """(id, text, start, stop) per token, offsets in bytes of `text` in UTF-8, as TGI's
        /tokenize gives them (its tokenizer's offsets), and each token's text sliced from there."""
        data = text.encode("utf-8", "replace")
        pieces, start = [], 0
        with self._held() as llm:
            for token in llm.tokenize(data, add_bos=False, special=True):
                stop = start + len(llm.detokenize([token], special=True))
                pieces.append((token, data[start:stop].decode("utf-8", "replace"), start, stop))
                start = stop
        return pieces

    def piece(self, token: int) -> str:
        """One token's text, as a top-token list shows it."""
        with self._held() as llm:
            return llm.detokenize([token], special=True).decode("utf-8", "replace")

    def prompt_logprobs(self, prompt: str) -> list[tuple[int, str, float | None]]:
        """(id, text, logprob) for each token `generate()` feeds for `prompt` (start token
        included): the logprob of each given the ones before it, None for the first."""

        tokens = self.tokens(prompt)
        with llama_errors(), self._held() as llm:
            logprobs = prompt_logprobs(llm, tokens, self._threads)
        return [(t, self.piece(t), lp) for t, lp in zip(tokens, logprobs)]

    def eos(self) -> tuple[int, str]:
        """The end-of-generation token's id and text (TGI shows it as a special token)."""
        with self._held() as llm:
            token = llm.token_eos()
            return token, llm.detokenize([token], special=True).decode("utf-8", "replace")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._released.wait_for(lambda: self._holders == 0, timeout=CLOSE_WAIT_S)
            if self._engine is not None:
                self._engine.close()  # first: it runs on the model
                self._engine = None
            if self._llm is not None:
                self._llm.close()
                self._llm = None

"""A Hugging Face model directory, or a GGUF file (dequantised on load), through `transformers`.

Generation runs in a background thread and streams through transformers'
`TextIteratorStreamer`. Closing the stream sets a flag that a stopping
criterion checks after every token, then joins the thread: the model stops
within a token of `close()` and no generation outlives its stream.
Offline only: a path that is not on disk is an error, never a download.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from falconchat.backends.base import FormatDecidedOnLoad
from falconchat.backends.gguf import bundled_model_path, is_gguf
from falconchat.backends.templates import ends_open, render_chat_template
from falconchat.config_models import ModelSpec
from falconchat.errors import ConfigError, FalconchatError, InputError
from falconchat.prompt import clean_reply, stop_sequences
from falconchat.types import Done, SamplingParams, TextDelta, TokenStream

EXTRA = "pip install 'falconchat[transformers]'"
DEFAULT_CONTEXT = 2048
THREAD_NAME = "falconchat-transformers"


class TransformersBackend(FormatDecidedOnLoad):
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name = spec.name
        self._format = spec.format  # "auto" becomes "native" or "falcon" when the model loads
        self._loaded = None  # (model, tokenizer, device)
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()  # one generation at a time: they would share the CPU and the seed

    def describe(self) -> str:
        where = "bundled" if self.spec.model_path is None else self.model_path.name
        return f"{self.name} ({where}, transformers {self.spec.device or 'auto'})"

    @property
    def model_path(self) -> Path:
        if self.spec.model_path:
            return Path(self.spec.model_path).expanduser()
        return bundled_model_path()

    def check(self) -> str:
        """A quick look without loading: the packages are installed and the model is on disk."""
        missing = [m for m in ("torch", "transformers", "accelerate") if importlib.util.find_spec(m) is None]
        path = self.model_path
        if path.is_file():
            if not is_gguf(path):
                raise ConfigError(f"not a GGUF file or model directory: {path}")
            missing += ["gguf"] if importlib.util.find_spec("gguf") is None else []
            found = f"{path.stat().st_size / 1e6:.0f} MB GGUF file"
        elif path.is_dir():
            if not (path / "config.json").is_file():
                raise ConfigError(f"not a Hugging Face model directory (no config.json): {path}")
            found = "model directory"
        else:
            raise ConfigError(f"model not found: {path} (a local directory or .gguf file; nothing is downloaded)")
        if missing:
            raise ConfigError(f"the transformers backend needs {', '.join(missing)}: {EXTRA}")
        return f"ok ({found})"

    # ---- loading ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        self.load()

    def load(self):
        """(model, tokenizer, device), loaded once; thread-safe so the REPL can warm it up."""
        with self._load_lock:
            if self._loaded is None:
                loaded = self._open()
                if self.spec.format == "auto":  # a model that carries a chat template answers best in it
                    self._format = "native" if _chat_template(loaded[1]) else "falcon"
                self._loaded = loaded
            return self._loaded

    def _open(self):
        self.check()
        # Read when huggingface_hub and tqdm are first imported: no request to the Hub, ever
        # (local_files_only below says so too), and no GGUF conversion bar on the user's terminal.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        os.environ["TQDM_DISABLE"] = "1"
        import torch  # noqa: PLC0415 (heavy: torch)
        import transformers  # noqa: PLC0415 (heavy: transformers)

        transformers.logging.set_verbosity_error()  # warnings and progress bars would garble the terminal
        transformers.logging.disable_progress_bar()
        if self.spec.threads:
            torch.set_num_threads(self.spec.threads)
        device = self._device(torch)
        path = self.model_path
        where: dict[str, Any] = {
            "pretrained_model_name_or_path": str(path.parent if path.is_file() else path),
            "local_files_only": True,
        }
        if path.is_file():
            where["gguf_file"] = path.name
        try:
            # One config for both: each read of a GGUF parses its whole vocabulary (seconds).
            config = transformers.AutoConfig.from_pretrained(**where)
            tokenizer = transformers.AutoTokenizer.from_pretrained(**where, config=config)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                **where, config=config, dtype=torch.float32 if device == "cpu" else "auto"
            )
        except Exception as exc:  # loaders fail in many ways (OSError, ValueError, struct errors…): one line
            raise ConfigError(f"cannot load model {path}: {_first_line(exc)}") from None
        return model.to(device).eval(), tokenizer, device  # type: ignore[arg-type]  # to() takes a device name

    def _device(self, torch) -> str:
        wanted = self.spec.device or "auto"
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {wanted!r}: no CUDA GPU is available to torch here")
        return wanted

    # ---- the Backend protocol --------------------------------------------------------------

    @property
    def context_length(self) -> int:
        if self.spec.context_length:
            return self.spec.context_length
        config = self.load()[0].config
        return (
            getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or DEFAULT_CONTEXT
        )

    def count_tokens(self, text: str) -> int:
        return len(self.load()[1].encode(text, add_special_tokens=False))

    def stream(self, prompt: str, params: SamplingParams) -> TokenStream:
        _refuse_constraint(params)
        stops = stop_sequences(params.stop)
        events = self.generate(prompt, params, stops, special_tokens=True)
        return clean_reply(events, stops, after=prompt)

    def count_message_tokens(self, messages: Sequence[dict]) -> int:
        prompt = self.native_prompt(messages, continue_last=ends_open(messages))
        return len(self.load()[1].encode(prompt, add_special_tokens=False))

    def stream_messages(self, messages: Sequence[dict], params: SamplingParams) -> TokenStream:
        """Chat messages in the tokenizer's own template (format = "native"); a last assistant
        message is a reply to go on with: its end takes part in stop detection, as /continue's text."""
        _refuse_constraint(params)
        continuing = ends_open(messages)
        prompt = self.native_prompt(messages, continue_last=continuing)
        stops = list(params.stop)
        events = self.generate(prompt, params, stops, special_tokens=False)
        return clean_reply(events, stops, drop_leading_space=False, after=prompt if continuing else None)

    def native_prompt(self, messages: Sequence[dict], *, continue_last: bool = False) -> str:
        """The tokenizer's template rendered for `messages`, ending with the assistant's header,
        or with `continue_last` inside the last (assistant) message."""

        model, tokenizer, _ = self.load()
        template = _chat_template(tokenizer)
        if not template:
            raise ConfigError(f'{self.model_path.name} carries no chat template; use format = "falcon"')
        end_ids = self._eos_ids(model, tokenizer)
        eos = tokenizer.convert_ids_to_tokens(end_ids[0]) if end_ids else tokenizer.eos_token
        return render_chat_template(
            template,
            messages,
            bos_token=tokenizer.bos_token or "",
            eos_token=eos or "",
            thinking=self.spec.thinking,
            reasoning_effort=self.spec.reasoning_effort,
            continue_last=continue_last,
        )

    def close(self) -> None:
        with self._load_lock:
            self._loaded = None  # the weights go with the last reference

    # ---- generation ------------------------------------------------------------------------

    def generate(
        self, prompt: str, params: SamplingParams, stops: Sequence[str] = (), *, special_tokens: bool = True
    ) -> TokenStream:
        """Text pieces as the streamer releases them (whole words), then one Done.

        `special_tokens`: let the tokenizer add its own (BOS) around a plain
        prompt; a chat template writes them itself. A stop sequence that is one
        special token (such as "<|endoftext|>") ends generation as a token,
        since special tokens are never shown as text.
        """
        import torch  # noqa: PLC0415 (heavy: torch)
        from transformers import GenerationConfig, StoppingCriteriaList, TextIteratorStreamer  # noqa: PLC0415 (heavy: transformers)

        model, tokenizer, device = self.load()
        started = time.monotonic()
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=special_tokens).to(device)
        prompt_tokens = inputs["input_ids"].shape[1]
        max_new = min(params.max_new_tokens, self.context_length - prompt_tokens)
        if max_new < 1:
            raise InputError(f"the prompt is {prompt_tokens} tokens; the model's context holds {self.context_length}")
        end_ids = self._eos_ids(model, tokenizer) + _special_ids(tokenizer, stops)
        config = _generation_config(GenerationConfig, params, max_new, end_ids, tokenizer.pad_token_id)
        progress = _Progress(prompt_tokens)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(
                        input_ids=inputs["input_ids"],
                        attention_mask=inputs["attention_mask"],
                        generation_config=config,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([progress]),
                    )
            except Exception as exc:
                failure.append(exc)
                streamer.end()  # wake the reader, which raises it

        with self._generate_lock:
            if params.seed is not None:
                torch.manual_seed(params.seed)  # the global generator, read by the one generation running
            thread = threading.Thread(target=run, name=THREAD_NAME, daemon=True)
            thread.start()
            first_token_s = None
            try:
                for text in streamer:
                    if text:
                        first_token_s = first_token_s or time.monotonic() - started
                        yield TextDelta(text)
            finally:
                progress.cancel.set()  # closed early: the criterion stops the model at its next token
                thread.join()
        if failure:
            raise FalconchatError(f"the local model failed: {_first_line(failure[0])}")
        ended = progress.last_token in end_ids
        yield Done(
            "stop" if ended or progress.generated < max_new else "length",
            prompt_tokens=prompt_tokens,
            completion_tokens=progress.generated - ended,
            first_token_s=first_token_s,
            total_s=time.monotonic() - started,
        )

    def _eos_ids(self, model, tokenizer) -> list[int]:
        # The generation config's, first: a tokenizer converted from GGUF may name the wrong end token.
        ids = model.generation_config.eos_token_id
        ids = tokenizer.eos_token_id if ids is None else ids
        return [ids] if isinstance(ids, int) else list(ids or [])


class _Progress:
    """A stopping criterion (called after every generated token) that counts and obeys `cancel`."""

    def __init__(self, prompt_tokens: int):
        self.prompt_tokens = prompt_tokens
        self.generated = 0
        self.last_token: int | None = None
        self.cancel = threading.Event()

    def __call__(self, input_ids, scores, **kwargs):
        import torch  # noqa: PLC0415 (heavy: torch)

        self.generated = input_ids.shape[1] - self.prompt_tokens
        self.last_token = int(input_ids[0, -1])
        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device)


def _generation_config(GenerationConfig, params: SamplingParams, max_new: int, end_ids: list[int], pad_id):
    """A whole config, so the model's own defaults (a stored temperature, say) do not leak in."""
    sampling = {}
    if params.temperature > 0:  # temperature 0 means greedy
        sampling = {
            "do_sample": True,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k or None,
        }
    return GenerationConfig(
        max_new_tokens=max_new,
        eos_token_id=end_ids,
        pad_token_id=end_ids[0] if pad_id is None and end_ids else pad_id,
        repetition_penalty=params.repetition_penalty,
        **sampling,
    )


def _special_ids(tokenizer, stops: Sequence[str]) -> list[int]:
    special = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    return [tokenizer.convert_tokens_to_ids(s) for s in stops if s in special]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _refuse_constraint(params: SamplingParams) -> None:
    """Before anything runs: this backend has no constrained decoding (yet)."""
    if params.constraint is not None:
        raise ConfigError(
            "the transformers backend cannot constrain replies (--schema, --json-mode); "
            "use the bundled model, a TGI or an OpenAI-compatible endpoint"
        )


def _chat_template(tokenizer) -> str | None:
    template = tokenizer.chat_template
    if isinstance(template, dict):  # a tokenizer may name several; "default" is the chat one
        template = template.get("default")
    return template or None

"""The transformers backend, for real, on the bundled GGUF (dequantised by transformers) and on
the model directory saved from it; the real `falconchat ask` on that directory.

The GGUF is loaded once for the module (about 30 s on two cores: transformers parses its
vocabulary in Python); the directory loads in under a second. Replies are kept short.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from falconchat.backends.gguf import bundled_model_path
from falconchat.backends.transformers import THREAD_NAME, TransformersBackend
from falconchat.config_models import ModelSpec
from falconchat.errors import ConfigError
from falconchat.types import Done, SamplingParams, TextDelta
from processes import falconchat, isolated_env, one_error_line

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

GREEDY = SamplingParams(temperature=0, max_new_tokens=24)
QUESTION = "Name three colours of the rainbow."
PROMPT = f"User: {QUESTION}\nAssistant:"


def spec(path=None, **changes) -> ModelSpec:
    return ModelSpec(name="smol-tf", backend="transformers", model_path=path and str(path), **changes)


def run(events):
    events = list(events)
    assert sum(isinstance(e, Done) for e in events) == 1 and isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def generation_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture(scope="module")
def backend():
    """The bundled GGUF file, dequantised by transformers (falcon format)."""
    b = TransformersBackend(spec(bundled_model_path(), device="cpu"))
    b.load()
    yield b
    b.close()


@pytest.fixture(scope="module")
def model_dir(backend, tmp_path_factory):
    """The same model saved as a Hugging Face model directory (safetensors, tokenizer, template)."""
    path = tmp_path_factory.mktemp("smollm2-transformers")
    model, tokenizer, _ = backend.load()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def native(model_dir):
    """The model directory with format = "native": the tokenizer's own chat template."""
    b = TransformersBackend(spec(model_dir, format="native"))
    yield b
    b.close()


# ---- quick: no model is loaded ---------------------------------------------------------


def test_importing_falconchat_imports_no_torch():
    code = (
        "import sys, falconchat.cli.app, falconchat.backends.transformers; "
        "print(any(m in sys.modules for m in ('torch', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_check_looks_without_loading(tmp_path):
    assert TransformersBackend(spec()).check() == "ok (98 MB GGUF file)"  # None: the bundled GGUF
    (tmp_path / "notes.txt").write_text("hello")
    cases = {
        tmp_path / "missing": "model not found",
        tmp_path / "notes.txt": "not a GGUF file or model directory",
        tmp_path: "no config.json",
        "HuggingFaceTB/SmolLM2-135M-Instruct": "nothing is downloaded",  # a Hub id is not fetched
    }
    for path, words in cases.items():
        with pytest.raises(ConfigError) as info:
            TransformersBackend(spec(path)).check()
        assert words in info.value.message and "\n" not in info.value.message
        assert info.value.exit_code == 2


def test_a_missing_extra_is_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs torch: pip install 'falconchat\[transformers\]'"):
        TransformersBackend(spec()).check()


# ---- the GGUF, in process --------------------------------------------------------------


@pytest.mark.slow
def test_streams_a_falcon_reply_then_exactly_one_done(backend):
    text, done = run(backend.stream(PROMPT, GREEDY))
    assert text.strip() and not text.startswith(" ")  # which words, and how many, is the model's choice
    assert done.finish_reason in ("stop", "length") and done.prompt_tokens > 5 and done.completion_tokens > 0
    assert backend.context_length == 8192  # from the GGUF's metadata
    assert 0 <= done.prompt_tokens - backend.count_tokens(PROMPT) <= 1  # at most a start token added
    assert not generation_threads()


@pytest.mark.slow
def test_greedy_and_seeded_runs_repeat(backend):
    assert run(backend.stream(PROMPT, GREEDY))[0] == run(backend.stream(PROMPT, GREEDY))[0]
    seeded = SamplingParams(temperature=1.0, top_p=0.9, top_k=40, repetition_penalty=1.1, seed=7, max_new_tokens=16)
    first = run(backend.stream(PROMPT, seeded))[0]
    assert first == run(backend.stream(PROMPT, seeded))[0]
    assert run(backend.stream(PROMPT, seeded.with_changes(seed=8)))[0] != first, "the seed changes the sample"


@pytest.mark.slow
def test_max_new_tokens_ends_with_length(backend):
    # A count already under way: any model goes on counting, so the reply reaches the limit.
    counting = ", ".join(str(n) for n in range(1, 21)) + ","
    text, done = run(backend.stream(counting, GREEDY.with_changes(max_new_tokens=8)))
    assert (done.finish_reason, done.completion_tokens) == ("length", 8)
    assert 0 < backend.count_tokens(text) <= 9


@pytest.mark.slow
def test_a_stop_sequence_ends_the_reply_and_is_never_shown(backend):
    full, _ = run(backend.stream(PROMPT, GREEDY))
    stop = [w for w in full.split() if len(w) > 3][1]
    text, done = run(backend.stream(PROMPT, GREEDY.with_changes(stop=(stop,))))
    assert done.finish_reason == "stop" and stop not in text and full.startswith(text)
    assert not generation_threads(), "the stop closed the generation"


@pytest.mark.slow
def test_the_falcon_stop_sequence_is_cut(backend):
    # Whatever the model writes, a "\nUser:" line of its own is never shown: the reply is the raw text up to it.
    prompt = "User: hi\nAssistant: Hello!\nUser: What is 2+2?\nAssistant:"
    raw = "".join(e.text for e in backend.generate(prompt, GREEDY, ()) if isinstance(e, TextDelta))
    text, done = run(backend.stream(prompt, GREEDY))
    assert "User:" not in text and text.strip() and done.finish_reason in ("stop", "length")
    assert raw.lstrip().startswith(text.strip())


@pytest.mark.slow
def test_close_mid_reply_stops_the_model_within_a_token_and_joins_the_thread(backend, monkeypatch):
    model = backend.load()[0]
    forward = model.forward
    steps = []
    monkeypatch.setattr(model, "forward", lambda *a, **k: steps.append(1) or forward(*a, **k))
    stream = backend.stream(
        "User: Tell me a long story about a dragon.\nAssistant:", GREEDY.with_changes(max_new_tokens=400)
    )
    pieces = [next(stream) for _ in range(3)]
    assert all(isinstance(p, TextDelta) for p in pieces)
    at_close = len(steps)
    stream.close()
    assert not generation_threads(), "close() joined the generation thread"
    assert len(steps) - at_close <= 2, "the model stopped within a token or two of close()"
    assert len(steps) < 60
    after = len(steps)
    threading.Event().wait(0.3)
    assert len(steps) == after, "nothing runs on after close()"
    monkeypatch.undo()
    assert run(backend.stream(PROMPT, GREEDY))[0].strip(), "the backend still answers"


# ---- the model directory, format = "native" --------------------------------------------


@pytest.mark.slow
def test_native_format_uses_the_tokenizers_chat_template(native):
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": QUESTION}]
    prompt = native.native_prompt(messages)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert prompt.endswith("<|im_start|>user\n" + QUESTION + "<|im_end|>\n<|im_start|>assistant\n")
    assert native.takes_messages
    text, done = run(native.stream_messages(messages, GREEDY.with_changes(max_new_tokens=40)))
    assert text.strip() and "<|im_" not in text and done.completion_tokens > 0
    assert done.finish_reason in ("stop", "length")


@pytest.mark.slow
def test_auto_format_is_the_tokenizers_template_when_it_has_one(model_dir, tmp_path):
    """Issue 15, item 10: "auto" (the default) is decided when the model loads; /continue's
    prompt leaves the cut reply open in the template."""
    import json
    import shutil

    with_template = TransformersBackend(spec(model_dir, format="auto"))
    try:
        assert with_template.prompt_format == "native" and with_template.takes_messages
        cut = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "Red, orange,"}]
        assert with_template.native_prompt(cut, continue_last=True).endswith("<|im_start|>assistant\nRed, orange,")
        text, done = run(with_template.stream_messages(cut, GREEDY.with_changes(max_new_tokens=6)))
        assert done.completion_tokens > 0 and "<|im_" not in text
    finally:
        with_template.close()
    plain = tmp_path / "plain"
    shutil.copytree(model_dir, plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    without = TransformersBackend(spec(plain, format="auto"))
    try:
        assert without.prompt_format == "falcon" and not without.takes_messages
    finally:
        without.close()


@pytest.mark.slow
def test_a_template_that_reaches_for_python_internals_is_refused(native, monkeypatch):
    tokenizer = native.load()[1]
    monkeypatch.setattr(tokenizer, "chat_template", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ConfigError, match="Python internals"):
        native.stream_messages([{"role": "user", "content": "hi"}], GREEDY)


# ---- broken models ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_corrupt_model_file_is_one_clear_error(tmp_path):
    truncated = tmp_path / "truncated.gguf"
    with bundled_model_path().open("rb") as fh:
        truncated.write_bytes(fh.read(3_000_000))
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    for path in (truncated, garbage):
        with pytest.raises(ConfigError) as info:
            TransformersBackend(spec(path)).load()
        message = info.value.message
        assert message.startswith(f"cannot load model {path}: ") and "\n" not in message


# ---- the real command ------------------------------------------------------------------


@pytest.mark.slow
def test_ask_and_models_through_a_config_file(backend, model_dir, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[models.tf]\nbackend = "transformers"\nmodel_path = "{model_dir}"\ndevice = "cpu"\nformat = "falcon"\n\n'
        f'[models.tf-auto]\nbackend = "transformers"\nmodel_path = "{model_dir}"\n\n'
        f'[models.tf-chat]\nbackend = "transformers"\nmodel_path = "{model_dir}"\nformat = "native"\n\n'
        f'[models.gone]\nbackend = "transformers"\nmodel_path = "{tmp_path / "nowhere"}"\n'
    )
    env = isolated_env(tmp_path, FALCONCHAT_CONFIG=str(config))

    def ask(model: str) -> str:
        result = falconchat("ask", "-m", model, "-t", "0", "--max-new-tokens", "24", QUESTION, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stderr == b"", "no warnings or progress bars"
        return result.stdout.decode()

    expected = run(backend.stream(PROMPT, GREEDY))[0]  # the directory is the GGUF, saved
    assert ask("tf") == expected + "\n"
    assert ask("tf-auto") == ask("tf-chat")  # the default: the tokenizer's own chat template

    listing = falconchat("models", cwd=tmp_path, env=env).stdout.decode()
    assert "transformers" in listing and "ok (model directory)" in listing and "model not found" in listing

    missing = falconchat("ask", "-m", "gone", "hi", cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert "model not found" in one_error_line(missing.stderr)

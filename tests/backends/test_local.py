"""The bundled model, for real, through the local backend."""

from __future__ import annotations

import pytest

from falconchat.backends.gguf import bundled_model_path
from falconchat.backends.local import LocalBackend
from falconchat.config_models import ModelSpec
from falconchat.conversation import Conversation
from falconchat.errors import ConfigError, InputError
from falconchat.types import Done, SamplingParams, TextDelta

pytestmark = pytest.mark.slow  # loads the bundled model and generates

GREEDY = SamplingParams(temperature=0, max_new_tokens=40)
QUESTION = "User: Name three colours of the rainbow.\nAssistant:"


@pytest.fixture
def backend(bundled_model):
    return bundled_model


def run(backend, prompt, params):
    events = list(backend.stream(prompt, params))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text, events[-1]


def test_bundled_model_ships_with_the_install():
    path = bundled_model_path()
    assert path.is_file() and path.stat().st_size > 50_000_000
    assert path.read_bytes()[:4] == b"GGUF"


def test_streams_text_then_exactly_one_done(backend):
    events = list(backend.stream(QUESTION, GREEDY))
    assert isinstance(events[-1], Done)
    assert sum(isinstance(e, Done) for e in events) == 1
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3, "the reply streams in several pieces"
    text = "".join(d.text for d in deltas)
    assert text.strip() and not text.startswith(" ")
    assert events[-1].prompt_tokens > 5 and events[-1].completion_tokens >= len(deltas) - 1


def test_greedy_runs_repeat(backend):
    assert run(backend, QUESTION, GREEDY)[0] == run(backend, QUESTION, GREEDY)[0]


def test_seeded_sampling_repeats(backend):
    params = SamplingParams(temperature=1.0, seed=1234, max_new_tokens=30)
    assert run(backend, QUESTION, params)[0] == run(backend, QUESTION, params)[0]


def test_max_new_tokens_ends_with_length(backend):
    text, done = run(backend, "User: Count from one to one hundred.\nAssistant:", GREEDY.with_changes(max_new_tokens=8))
    assert done.finish_reason == "length"
    assert done.completion_tokens == 8
    assert 0 < len(backend.load().tokenize(text.encode(), add_bos=False)) <= 9


def test_a_stop_sequence_ends_the_reply_and_is_never_shown(backend):
    full, _ = run(backend, QUESTION, GREEDY)
    words = [w for w in full.split() if len(w) > 3]
    assert words, full
    stop = words[1] if len(words) > 1 else words[0]
    text, done = run(backend, QUESTION, GREEDY.with_changes(stop=(stop,)))
    assert done.finish_reason == "stop"
    assert stop not in text
    assert full.startswith(text)


def test_falcon_stop_sequence_is_cut(backend):
    # Greedy SmolLM2 goes on to write the next "User:" line when allowed to; it must never be shown.
    conv = Conversation()
    prompt = conv.prompt_for("Say hello.", backend.count_tokens, 2000).text
    text, _done = run(backend, prompt, GREEDY.with_changes(max_new_tokens=120))
    assert "\nUser:" not in text and "<|endoftext|>" not in text


def test_closing_the_stream_stops_decoding_within_two_tokens(backend):
    llm = backend.load()
    stream = backend.stream("User: Count from one to one hundred.\nAssistant:", GREEDY.with_changes(max_new_tokens=400))
    for _ in range(5):
        next(stream)
    at_close = llm.n_tokens
    stream.close()
    assert llm.n_tokens - at_close <= 2
    # The model is free at once: the next request runs.
    _text, done = run(backend, QUESTION, GREEDY.with_changes(max_new_tokens=5))
    assert done.finish_reason in ("length", "stop")


def test_next_turn_reuses_the_cached_prefix(backend):
    """Turn 2 re-reads only what is new, so it starts far sooner than turn 1 (same run, a ratio)."""
    conv = Conversation(system=" ".join(["You are a careful assistant who answers briefly."] * 60))
    budget = backend.context_length - 30
    backend.load().reset()

    def turn(message):
        prompt = conv.prompt_for(message, backend.count_tokens, budget).text
        events = list(conv.record(message, backend.stream(prompt, GREEDY.with_changes(max_new_tokens=20))))
        return events[-1]

    first = turn("What is the sun?")
    second = turn("And the moon?")
    assert first.prompt_tokens > 500
    assert second.first_token_s < first.first_token_s / 3, (first, second)


def test_context_length_and_token_count(backend):
    assert backend.context_length >= 2048
    assert backend.count_tokens("hello world") in (2, 3)


def test_missing_model_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        LocalBackend(ModelSpec(name="x", backend="local", model_path=str(tmp_path / "none.gguf"))).load()


@pytest.mark.parametrize("content", [b"not a model at all", b"GGUF" + b"\x00" * 64])
def test_corrupt_model_file_is_one_clear_error_and_llama_stays_quiet(tmp_path, capfd, content):
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        LocalBackend(ModelSpec(name="x", backend="local", model_path=str(path))).load()
    assert str(path) in caught.value.message and "\n" not in caught.value.message
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("context", [300, 1000])
def test_a_context_not_a_multiple_of_256_is_the_budget_to_the_last_token(context):
    """llama.cpp rounds 300 up to 512 and 1000 to 1024; the budget is the size asked for."""
    backend = LocalBackend(ModelSpec(name="smollm2", backend="local", context_length=context))
    try:
        assert backend.context_length == context
        base = len(backend.tokens("apple"))  # " apple" is one more token each

        def prompt(n):  # a prompt of exactly n tokens, as generate() feeds it
            text = "apple" + " apple" * (n - base)
            assert len(backend.tokens(text)) == n
            return text

        with pytest.raises(InputError, match=f"context holds {context}"):
            list(backend.stream(prompt(context + 8), GREEDY))  # between the size asked and llama.cpp's
        # A prompt that leaves a few tokens: the reply stops at the context's end, not past it.
        events = list(backend.generate(prompt(context - 3), GREEDY.with_changes(max_new_tokens=50)))
        done = events[-1]
        assert isinstance(done, Done) and done.prompt_tokens + done.completion_tokens <= context
    finally:
        backend.close()

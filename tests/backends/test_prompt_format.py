"""Issue 15, item 10: a local model's format is "auto" — its own chat template when the GGUF
carries one, else the Falcon-style prompt — decided when the backend loads the model; and
everything the Falcon-style prompt did works in the model's template (/continue, trimming)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from falconchat.backends.gguf import bundled_model_path
from falconchat.backends.local import LocalBackend
from falconchat.config import load_settings
from falconchat.config_models import ModelSpec
from falconchat.conversation import Conversation
from falconchat.exchange import answer, continue_answer
from falconchat.records import Collector
from falconchat.types import SamplingParams, Turn
from gguf_edit import with_metadata_string

pytestmark = pytest.mark.slow  # loads the bundled model and generates

COUNTING = "Count from one to twenty in words, one per line."


def bundled_default(tmp_path) -> ModelSpec:
    """The model `falconchat` chooses with nothing configured."""
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    return load_settings({}, environ=environ, cwd=tmp_path).model


@pytest.fixture
def native(tmp_path):
    backend = LocalBackend(bundled_default(tmp_path))
    yield backend
    backend.close()


def test_the_bundled_model_answers_in_its_own_chat_template_by_default(native):
    assert native.spec.format == "auto"  # config reads no model: the backend decides
    assert native.prompt_format == "native" and native.takes_messages
    conversation = Conversation()
    done = answer(conversation, native, "Hi", SamplingParams(temperature=0, max_new_tokens=8), Collector(), print)
    assert done.completion_tokens > 0
    assert "<|im_" not in conversation.turns[-1].assistant


def test_a_gguf_without_a_chat_template_gets_the_falcon_prompt(tmp_path):
    path = tmp_path / "plain.gguf"
    with_metadata_string(bundled_model_path(), path, "tokenizer.chat_template", None)
    backend = LocalBackend(ModelSpec(name="plain", backend="local", model_path=str(path), format="auto"))
    try:
        assert backend.prompt_format == "falcon" and not backend.takes_messages
        done = answer(
            Conversation(), backend, "Hi", SamplingParams(temperature=0, max_new_tokens=4), Collector(), print
        )
        assert done.finish_reason in ("stop", "length")
    finally:
        backend.close()


def test_an_explicit_falcon_format_wins_over_the_models_template():
    backend = LocalBackend(ModelSpec(name="smollm2", backend="local", format="falcon"))
    try:
        assert backend.prompt_format == "falcon" and not backend.takes_messages
    finally:
        backend.close()


def test_continue_in_the_native_format_goes_on_with_the_same_assistant_message(native):
    conversation, notices = Conversation(), []
    cut = SamplingParams(temperature=0, max_new_tokens=6)
    assert answer(conversation, native, COUNTING, cut, Collector(), notices.append).finish_reason == "length"
    before = conversation.turns[-1].assistant
    prompts = []
    generate = native.generate

    def spy(prompt, *args, **kwargs):
        prompts.append(prompt)
        return generate(prompt, *args, **kwargs)

    native.generate = spy  # type: ignore[method-assign]
    more = Collector()
    done = continue_answer(conversation, native, cut.with_changes(max_new_tokens=12), more, notices.append)
    assert done.finish_reason in ("stop", "length") and done.completion_tokens > 0
    assert len(conversation.turns) == 1  # the same exchange
    after = conversation.turns[-1].assistant
    assert after == before + more.text and len(after) > len(before)
    # One assistant message, left open at the reply's end: no end-of-turn marker after it.
    (prompt,) = prompts
    assert prompt.endswith("<|im_start|>assistant\n" + before)
    assert prompt.count("<|im_start|>assistant") == 1


def test_history_is_fitted_by_the_tokens_of_the_models_own_template(tmp_path):
    backend = LocalBackend(replace(bundled_default(tmp_path), context_length=256))
    try:
        turns = [Turn(f"Question {i}: what is {i} plus {i}?", f"{i} plus {i} is {2 * i}.") for i in range(30)]
        conversation, notices = Conversation(turns=turns), []
        params = SamplingParams(temperature=0, max_new_tokens=16)
        done = answer(conversation, backend, "And 5 plus 5?", params, Collector(), notices.append)
        assert any("left out" in n for n in notices)
        assert done.prompt_tokens <= 256 - 16  # the template's prompt itself fits the budget
        fitted = Conversation(turns=turns).prompt_for("Hi", backend.count_tokens, 200, backend.count_message_tokens)
        assert fitted.prompt_tokens == len(backend.tokens(backend.native_prompt(fitted.messages))) <= 200
    finally:
        backend.close()

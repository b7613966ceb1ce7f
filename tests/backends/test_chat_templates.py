"""`format = "native"` on the chat templates of today's models (real templates, no weights):
each renders a conversation with the system text and every message in order and ends
with its model's assistant header; thinking switches reach the template; gpt-oss's
channels are split into reasoning; reasoning never goes back into the next prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from falconchat.backends.templates import render_chat_template
from falconchat.conversation import Conversation
from falconchat.errors import ConfigError
from falconchat.thinking import separate_reasoning
from falconchat.types import Done, ReasoningDelta, TextDelta

TEMPLATES = Path(__file__).parent.parent / "data" / "chat_templates"
SYSTEM = "You are a terse pirate."
CONVERSATION = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris, matey."},
    {"role": "user", "content": "And of Spain?"},
]
# Each model's template and the header its prompt must end with (the model writes the reply after it).
ASSISTANT_HEADERS = {
    "Qwen-Qwen3-0.6B": "<|im_start|>assistant\n",
    "meta-llama-Llama-3.1-8B-Instruct": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "google-gemma-2-2b-it": "<start_of_turn>model\n",
    "microsoft-Phi-3.5-mini-instruct": "<|assistant|>\n",
    "openai-gpt-oss-120b": "<|start|>assistant",
    "HuggingFaceTB-SmolLM3-3B": "<|im_start|>assistant\n",
}


def render(model: str, messages=CONVERSATION, **switches) -> str:
    template = (TEMPLATES / f"{model}.jinja").read_text()
    return render_chat_template(template, messages, bos_token="<s>", eos_token="</s>", **switches)


def test_every_stored_template_is_tested():
    assert {p.stem for p in TEMPLATES.glob("*.jinja")} == set(ASSISTANT_HEADERS)


@pytest.mark.parametrize("model", sorted(ASSISTANT_HEADERS))
def test_a_conversation_renders_in_order_and_ends_with_the_assistant_header(model):
    prompt = render(model)
    assert prompt.endswith(ASSISTANT_HEADERS[model])
    positions = [prompt.find(m["content"]) for m in CONVERSATION]
    assert all(at >= 0 for at in positions), positions
    assert positions == sorted(positions)  # the system text first, then each message in order


def test_gemma_refuses_a_system_role_so_it_is_folded_into_the_first_user_message():
    two_users = [{"role": "system", "content": "y"}, {"role": "user", "content": "x"}, {"role": "user", "content": "z"}]
    with pytest.raises(ConfigError, match="roles must alternate"):  # a refusal folding cannot mend stays one line
        render("google-gemma-2-2b-it", two_users)
    prompt = render("google-gemma-2-2b-it")
    assert f"<start_of_turn>user\n{SYSTEM}\n\nWhat is the capital of France?<end_of_turn>" in prompt
    assert "<start_of_turn>system" not in prompt


def test_an_empty_system_message_is_left_out():
    messages = [{"role": "system", "content": ""}, *CONVERSATION[1:]]
    assert render("google-gemma-2-2b-it", messages).startswith("<s><start_of_turn>user\nWhat is")
    assert "<|system|>" not in render("microsoft-Phi-3.5-mini-instruct", messages)


def test_dates_come_from_the_sandboxs_own_strftime_now_and_date_string():
    import re

    assert re.search(r"Current date: \d{4}-\d\d-\d\d\n", render("openai-gpt-oss-120b"))
    assert re.search(r"Today Date: \d\d \w{3} \d{4}\n", render("meta-llama-Llama-3.1-8B-Instruct"))


def test_qwen3_with_thinking_off_ends_with_its_empty_think_block():
    off = render("Qwen-Qwen3-0.6B", thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    for default in (render("Qwen-Qwen3-0.6B"), render("Qwen-Qwen3-0.6B", thinking=True)):
        assert default.endswith("<|im_start|>assistant\n") and "<think>" not in default


def test_smollm3_thinking_switch():
    assert "Reasoning Mode: /think" in render("HuggingFaceTB-SmolLM3-3B")
    off = render("HuggingFaceTB-SmolLM3-3B", thinking=False)
    assert "Reasoning Mode: /no_think" in off and off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n")


def test_gpt_oss_reasoning_effort():
    assert "Reasoning: medium" in render("openai-gpt-oss-120b")  # the template's default
    assert "Reasoning: low" in render("openai-gpt-oss-120b", reasoning_effort="low")


def scripted(*pieces: str):
    yield from (TextDelta(piece) for piece in pieces)
    yield Done("stop", prompt_tokens=5, completion_tokens=len(pieces), first_token_s=0.1, total_s=0.2)


@pytest.mark.parametrize("size", [1, 2, 5, 100])
@pytest.mark.parametrize("end", ["<|end|>", ""])  # llama.cpp does not show <|end|>, a control token
def test_gpt_oss_analysis_channel_is_reasoning_split_wherever_tokens_break(size, end):
    text = f"<|channel|>analysis<|message|>Spain: Madrid.{end}<|start|>assistant<|channel|>final<|message|>Madrid."
    events = list(separate_reasoning(scripted(*(text[i : i + size] for i in range(0, len(text), size)))))
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "Spain: Madrid."
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Madrid."
    assert events[-1].reasoning_s is not None


def test_gpt_oss_final_channel_alone_and_plain_text_pass_as_the_reply():
    for text, reply in [("<|channel|>final<|message|>Hi.", "Hi."), ("Hi <|channel|> there", "Hi <|channel|> there")]:
        events = list(separate_reasoning(scripted(text)))
        assert [e.text for e in events if isinstance(e, TextDelta)] == [reply]
        assert not any(isinstance(e, ReasoningDelta) for e in events)


@pytest.mark.parametrize("model", sorted(ASSISTANT_HEADERS))
@pytest.mark.parametrize(
    "reply",
    [
        ("<think>", "SECRET-REASONING", "</think>\n\n", "Paris."),
        (
            "<|channel|>analysis<|message|>",
            "SECRET-REASONING",
            "<|end|><|start|>assistant<|channel|>final<|message|>",
            "Paris.",
        ),
    ],
)
def test_reasoning_is_never_put_back_in_the_next_native_prompt(model, reply):
    conversation = Conversation(system=SYSTEM)
    list(conversation.record("Capital of France?", separate_reasoning(scripted(*reply))))
    fitted = conversation.prompt_for("And of Spain?", lambda text: len(text) // 4, 4000)
    prompt = render(model, fitted.messages)
    assert "Paris." in prompt and "SECRET-REASONING" not in prompt and "<|channel|>analysis" not in prompt


@pytest.mark.parametrize(
    ("argv", "thinking", "effort"),
    [
        (["ask", "--no-thinking", "hi"], False, None),
        (["--no-thinking", "ask", "hi"], False, None),
        (["ask", "--thinking", "--reasoning-effort", "high", "hi"], True, "high"),
        (["ask", "hi"], None, None),  # the template's own default
    ],
)
def test_the_flags_reach_the_local_model(monkeypatch, tmp_path, argv, thinking, effort):
    from falconchat.cli import app, ask
    from falconchat.config import load_settings
    from in_process import environment

    seen = []

    def load(flags, env):  # the settings the command would run with, then stop before any model loads
        seen.append(load_settings(flags, environ=env.environ, cwd=env.cwd).model)
        raise ConfigError("stop here")

    monkeypatch.setattr(ask, "load", load)  # where `ask` finds it
    app.run(argv, environment(tmp_path, stdin=b""))
    assert (seen[0].thinking, seen[0].reasoning_effort) == (thinking, effort)


def test_thinking_settings_in_the_config_file(tmp_path):
    from falconchat.config import load_settings

    config = tmp_path / "config.toml"
    config.write_text('[models.q]\nbackend = "local"\nformat = "native"\nthinking = false\nreasoning_effort = "high"\n')

    def model(flags, **environ):
        return load_settings({"config": str(config), "model": "q", **flags}, environ=environ, cwd=tmp_path).model

    assert (model({}).thinking, model({}).reasoning_effort) == (False, "high")
    assert model({"thinking": True}).thinking is True  # a flag beats the entry
    assert model({}, FALCONCHAT_REASONING_EFFORT="Low").reasoning_effort == "low"
    config.write_text('[models.far]\nbackend = "tgi"\nendpoint = "http://127.0.0.1:9"\nthinking = true\n')
    with pytest.raises(ConfigError, match=r"\[models.far\]: thinking is a setting of format = \"native\" and openai"):
        load_settings({"config": str(config), "model": "far"}, environ={}, cwd=tmp_path)
    # An OpenAI-compatible server (or an endpoint whose API is probed) gets them in the request.
    config.write_text('[models.far]\nendpoint = "http://127.0.0.1:9"\nthinking = true\n')
    assert load_settings({"config": str(config), "model": "far"}, environ={}, cwd=tmp_path).model.thinking is True

"""`format = "native"`: the model's own chat template, rendered in jinja2's sandbox."""

from __future__ import annotations

import pytest

from falconchat.backends.local import LocalBackend
from falconchat.backends.templates import render_chat_template
from falconchat.config_models import ModelSpec
from falconchat.conversation import Conversation
from falconchat.errors import ConfigError, InputError
from falconchat.types import SamplingParams, TextDelta

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_renders_a_chatml_template():
    assert render_chat_template(CHATML, MESSAGES, bos_token="<s>", eos_token="</s>") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{{ messages.append({'role': 'x'}) }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_a_template_reaching_for_python_internals_is_refused(payload):
    with pytest.raises(ConfigError, match=r"refused|failed"):
        render_chat_template(payload, MESSAGES, bos_token="", eos_token="")


def test_raise_exception_in_a_template_is_one_clear_error():
    with pytest.raises(ConfigError, match="only user and assistant"):
        render_chat_template("{{ raise_exception('only user and assistant') }}", MESSAGES, bos_token="", eos_token="")


# ---- /continue in the model's own template (issue 15, item 10) -------------------------------

CUT = [{"role": "user", "content": "Count to ten."}, {"role": "assistant", "content": "One, two, three,"}]


def test_a_reply_to_continue_is_left_open_at_the_end_of_the_prompt():
    prompt = render_chat_template(CHATML, CUT, bos_token="", eos_token="", continue_last=True)
    assert prompt == "<|im_start|>user\nCount to ten.<|im_end|>\n<|im_start|>assistant\nOne, two, three,"


def test_a_reply_a_template_strips_keeps_its_end_in_the_prompt():
    stripping = CHATML.replace("m['content']", "m['content'] | trim")
    cut = [CUT[0], {"role": "assistant", "content": "One, two,\n"}]
    prompt = render_chat_template(stripping, cut, bos_token="", eos_token="", continue_last=True)
    assert prompt.endswith("<|im_start|>assistant\nOne, two,\n")


def test_a_reply_whose_text_is_inside_the_end_marker_is_cut_after_the_reply():
    cut = [CUT[0], {"role": "assistant", "content": "m"}]  # "m" is also in "<|im_end|>"
    prompt = render_chat_template(CHATML, cut, bos_token="", eos_token="", continue_last=True)
    assert prompt.endswith("<|im_start|>assistant\nm")


def test_a_blank_reply_to_continue_opens_a_fresh_one():
    cut = [CUT[0], {"role": "assistant", "content": "  "}]
    prompt = render_chat_template(CHATML, cut, bos_token="", eos_token="", continue_last=True)
    assert prompt == render_chat_template(CHATML, CUT[:1], bos_token="", eos_token="")


def test_a_template_that_hides_the_reply_cannot_continue_it():
    hiding = "{% for m in messages %}{{ m['role'] }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    with pytest.raises(InputError, match="cannot go on"):
        render_chat_template(hiding, CUT, bos_token="", eos_token="", continue_last=True)


@pytest.mark.slow
def test_the_bundled_model_answers_in_its_own_template():
    backend = LocalBackend(ModelSpec(name="native", backend="local", format="native"))
    try:
        assert backend.takes_messages
        prompt = backend.native_prompt(MESSAGES)
        assert prompt.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nHi<|im_end|>" in prompt
        fitted = Conversation().prompt_for("What is the capital of France?", backend.count_tokens, 2000)
        events = list(backend.stream_messages(fitted.messages, SamplingParams(temperature=0, max_new_tokens=200)))
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        # The template's end token ends the reply and is never shown (the words are the model's choice).
        assert text.strip() and "<|im_end|>" not in text and "<|im_start|>" not in text
        assert events[-1].finish_reason in ("stop", "length")
    finally:
        backend.close()

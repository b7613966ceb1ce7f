"""A model's own chat template (from its GGUF metadata), rendered in jinja2's sandbox.

The template is untrusted model metadata: the immutable sandbox refuses any
reach for Python internals (attributes like `__class__`, mutating calls), and
such a template is one clear error, never code run on the user's machine.

Templates of today's models expect what llama.cpp and transformers give them:
`strftime_now` (gpt-oss, Llama 3.2), `date_string` (Llama 3.1), `raise_exception`,
the `break`/`continue` loop controls, and switches such as `enable_thinking`
(Qwen3, SmolLM3) and `reasoning_effort` (gpt-oss). A template that refuses a
system message (Gemma) gets it folded into the first user message, as llama.cpp
and Ollama do, rather than an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from falconchat.errors import ConfigError, InputError


def ends_open(messages: Sequence[dict]) -> bool:
    """Whether the messages end with the assistant's reply, cut short, for the model to go on with."""
    return bool(messages) and messages[-1].get("role") == "assistant"


def render_chat_template(
    template: str,
    messages: Sequence[dict],
    *,
    bos_token: str,
    eos_token: str,
    thinking: bool | None = None,
    reasoning_effort: str | None = None,
    continue_last: bool = False,
) -> str:
    """The prompt for `messages`, ending with the assistant's header; with `continue_last`,
    ending inside the last (assistant) message, for the model to go on with it (/continue).

    `thinking` is passed as `enable_thinking` and `reasoning_effort` as itself;
    None leaves the template's own default.
    """
    switches: dict[str, object] = {}
    if thinking is not None:
        switches["enable_thinking"] = thinking
    if reasoning_effort is not None:
        switches["reasoning_effort"] = reasoning_effort
    context = {"bos_token": bos_token, "eos_token": eos_token, **switches}
    # An empty system message is no message (Gemma's template would refuse even that).
    messages = [dict(m) for m in messages if m.get("role") != "system" or m.get("content", "").strip()]
    if continue_last:
        *earlier, reply = messages
        header = _safely_rendered(template, earlier, context, generation_prompt=True)
        if not reply.get("content", "").strip():
            return header  # nothing visible to go on from: a fresh reply
        whole = _safely_rendered(template, messages, context, generation_prompt=False)
        return _left_open(whole, header, reply["content"])
    return _safely_rendered(template, messages, context, generation_prompt=True)


def _safely_rendered(template: str, messages: list[dict], context: dict, *, generation_prompt: bool) -> str:
    from jinja2.exceptions import SecurityError, TemplateError  # noqa: PLC0415 (heavy: jinja2)

    context = {**context, "add_generation_prompt": generation_prompt}
    try:
        try:
            return _render(template, messages, context)
        except TemplateError:
            if not _has_system(messages):
                raise
            return _render(template, _fold_system(messages), context)  # a template that refuses the system role
    except SecurityError:
        raise ConfigError("the model's chat template reached for Python internals; it was refused") from None
    except (TemplateError, OverflowError) as exc:  # OverflowError: the sandbox's limit on range()
        raise ConfigError(
            f"the model's chat template failed: {str(exc)[:200]} (format = \"falcon\" uses falconchat's prompt instead)"
        ) from None


def _left_open(whole: str, header: str, reply: str) -> str:
    """The prompt with the reply as its last message, cut just after the reply's text so that
    its end-of-turn marker is gone (as transformers' `continue_final_message`). The text is
    looked for after what the prompt shares with the one that opens a fresh reply (`header`);
    a template may strip the text's edges: the prompt then ends at the stripped text, and the
    stripped end is put back."""
    core = reply.strip()
    shared = next((i for i, (a, b) in enumerate(zip(whole, header)) if a != b), min(len(whole), len(header)))
    at = whole.find(core, shared)
    if at < 0:
        raise InputError("the model's chat template does not show the reply as written, so it cannot go on with it")
    return whole[: at + len(core)] + reply[len(reply.rstrip()) :]


def _render(template: str, messages: list[dict], context: dict) -> str:
    return _compiled(template).render(messages=messages, date_string=datetime.now().strftime("%d %b %Y"), **context)


@lru_cache(maxsize=8)
def _compiled(template: str):
    """The template compiled once (~1.5 ms a compile: batch and serve render every request's
    prompt, and count its tokens, with it). A template that does not compile is not cached."""
    from jinja2.exceptions import TemplateError  # noqa: PLC0415 (heavy: jinja2)
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415 (heavy: jinja2)

    def raise_exception(message: str):
        raise TemplateError(message)

    def strftime_now(format: str) -> str:  # the date in the local time zone, as transformers and llama.cpp
        return datetime.now().strftime(str(format)[:100])

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment.from_string(template)


def _has_system(messages: list[dict]) -> bool:
    return bool(messages) and messages[0].get("role") == "system"


def _fold_system(messages: list[dict]) -> list[dict]:
    """The system message put before the first user message's text, a blank line between."""
    system, rest = messages[0]["content"], messages[1:]
    if rest and rest[0].get("role") == "user":
        return [{**rest[0], "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]

"""A model's own chat template (from its GGUF metadata), rendered in jinja2's sandbox.

The template is untrusted model metadata: the immutable sandbox refuses any
reach for Python internals (attributes like `__class__`, mutating calls), and
such a template is one clear error, never code run on the user's machine.
"""

from __future__ import annotations

from collections.abc import Sequence

from falconchat.errors import ConfigError


def render_chat_template(template: str, messages: Sequence[dict], *, bos_token: str, eos_token: str) -> str:
    from jinja2.exceptions import SecurityError, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    try:
        return environment.from_string(template).render(
            messages=list(messages), add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token
        )
    except SecurityError:
        raise ConfigError("the model's chat template reached for Python internals; it was refused") from None
    except (TemplateError, OverflowError) as exc:  # OverflowError: the sandbox's limit on range()
        raise ConfigError(f"the model's chat template failed: {str(exc)[:200]}") from None

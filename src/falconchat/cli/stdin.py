"""Reading the prompt: the argument, piped stdin, or both (DESIGN.md's rule)."""

from __future__ import annotations

from falconchat.environment import Environment
from falconchat.errors import InputError, UsageError


def read_prompt(
    env: Environment, prompt: str | None, limit: int, *, stdin_taken: bool = False, optional: bool = False
) -> str:
    """PROMPT + "\\n\\n" + stdin, stdin alone, or PROMPT alone (DESIGN.md's rule). `stdin_taken`:
    `-f -` reads it as a source instead; `optional`: sources were given, so no words are needed."""
    from falconchat.text import sanitize  # noqa: PLC0415 (per-command dispatch)

    if stdin_taken and prompt == "-":
        raise UsageError("standard input is read once: give '-' as the prompt or as -f -, not both")

    if prompt is not None and len(prompt.encode("utf-8", "replace")) > limit:
        raise InputError(f"the prompt is larger than {limit} bytes (FALCONCHAT_MAX_INPUT_BYTES)")
    piped = None
    stdin = env.stdin
    wants_stdin = (prompt == "-" or env.stdin_is_piped) and not stdin_taken
    if stdin is not None and wants_stdin:
        data = stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise InputError(f"stdin is larger than {limit} bytes (FALCONCHAT_MAX_INPUT_BYTES)")
        piped = sanitize(data.decode("utf-8", errors="replace"))
    if prompt == "-":
        prompt = None
    text = "\n\n".join(part for part in (prompt, piped) if part is not None and part.strip())
    if not text.strip() and not optional:
        raise UsageError("nothing to ask: give a prompt, or pipe text into falconchat ask")
    return text

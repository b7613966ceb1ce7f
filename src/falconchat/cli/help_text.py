"""What `--help` shows besides the options: each command's examples, and arguments named by
their metavar alone (Typer writes `PROMPT <str>`; the type says nothing a user needs)."""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperGroup

EXAMPLES: dict[str, list[str]] = {
    "falconchat": [
        "falconchat                                     # chat with the bundled model, offline",
        "falconchat --endpoint http://localhost:8000    # a TGI or OpenAI-compatible server",
        "falconchat --session work                      # a named chat, saved as you go",
        'echo "Why is the sky blue?" | falconchat       # piped: answers once',
    ],
    "falconchat chat": [
        "falconchat chat --session work",
        "falconchat chat --resume",
        "falconchat chat --endpoint http://localhost:11434 -m qwen3:8b -t 0.2",
    ],
    "falconchat ask": [
        'falconchat ask "Write a haiku about the sea"',
        'git diff | falconchat ask -t 0 "Review this diff" > review.md',
        'falconchat ask --json --max-tokens 24 "What is the capital of France?"',
        'falconchat ask -m hf:bartowski/Llama-3.2-1B-Instruct-GGUF --pull "Hi"  # a Hub model, pulled once',
        "falconchat ask --schema 'name, age int, tags list' \"Invent a character.\"",
    ],
    "falconchat batch": [
        "falconchat batch questions.txt -o answers.jsonl -t 0",
        "falconchat batch prompts.jsonl -o answers.jsonl --endpoint https://tgi.example.com -j 32",
        "falconchat batch prompts.jsonl -o answers.jsonl --resume    # carry on after Ctrl-C",
    ],
    "falconchat serve": [
        "falconchat serve                         # http://127.0.0.1:8080, the bundled model",
        "falconchat serve --port 9000 -m tiny     # a [models.tiny] from the config",
        "FALCONCHAT_SERVE_API_KEY=s3cret falconchat serve --host 0.0.0.0",
    ],
    "falconchat models": [
        "falconchat models",
        "falconchat models --endpoint http://localhost:8000",
        "falconchat models pull hf:bartowski/Llama-3.2-1B-Instruct-GGUF",
    ],
    "falconchat models rm": [
        "falconchat models rm hf:bartowski/Llama-3.2-1B-Instruct-GGUF",
        "falconchat models rm -y hf:owner/repo/model.Q8_0.gguf      # in a script",
    ],
    "falconchat models info": [
        "falconchat models info hf:bartowski/Llama-3.2-1B-Instruct-GGUF",
        "falconchat models info ~/models/tinyllama.Q4_K_M.gguf",
        "falconchat models info smollm2",
    ],
    "falconchat models pull": [
        "falconchat models pull hf:bartowski/Llama-3.2-1B-Instruct-GGUF          # Q4_K_M",
        "falconchat models pull hf:bartowski/Llama-3.2-1B-Instruct-GGUF:q8_0",
        "falconchat models pull hf:owner/repo/model.Q5_K_M.gguf@v1.0             # one file, pinned",
    ],
    "falconchat bench": [
        "falconchat bench --quick",
        "falconchat bench --only under_load --json",
    ],
    "falconchat logs": [
        "falconchat logs -n 5",
        'falconchat logs -q "sqlite"',
        "falconchat logs -c -x > last_code.py",
    ],
}


def with_examples(command: Any, path: str = "falconchat") -> Any:
    """`command` (Typer's, built for this run) and its subcommands with their examples as the
    help's epilog, and arguments shown by their metavar alone."""
    lines = EXAMPLES.get(path)
    if lines and not command.epilog:
        # \b keeps Click from re-flowing the lines into one paragraph.
        command.epilog = "Examples:\n\n\b\n" + "\n".join("  " + line for line in lines)
    for param in command.params:
        if isinstance(param, TyperArgument) and param.metavar:
            param.display_type_rich = _no_type  # type: ignore[method-assign]  # Typer's `NAME <type>`
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            with_examples(sub, f"{path} {name}")
    return command


def _no_type(ctx: Any) -> None:
    return None

"""Issue 15, item 10: the bundled model's replies in the Falcon-style prompt and in its own
chat template, on a fixed set of everyday prompts — counted by property, not by wording.

    make survey-formats        (or: PYTHONPATH=src .venv/bin/python tests/surveys/format_survey.py [falcon] [native])

Each prompt is a fresh conversation, answered through the same exchange as `ask` and the
REPL, greedy, at most 120 new tokens. A reply is

- *empty*: no visible text (what the user sees, after falconchat's cleaning);
- *blank start*: the model's raw text (before cleaning) begins with a line break, after
  at most the one space a Falcon-style reply starts with — the `\\n\\n…` replies of the issue;
- *degenerate*: visible, but under 3 words, or one line said 3 times or more.

*Tokens* is the mean number of tokens the model generated. Run alone (not collected by
pytest: a survey, not a test); llama.cpp's greedy text can differ between CPUs, so the
counts are this machine's.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass

from falconchat.backends.local import LocalBackend
from falconchat.config_models import ModelSpec
from falconchat.conversation import Conversation
from falconchat.exchange import answer
from falconchat.records import Collector
from falconchat.types import SamplingParams, TextDelta

MAX_NEW_TOKENS = 120
PROMPTS = [
    "Explain in three sentences why the sky is blue.",
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "Write a haiku about autumn.",
    "What is 12 times 7?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "How do I boil an egg?",
    "Translate 'good morning' into Spanish.",
    "What is photosynthesis?",
    "Name three planets in the solar system.",
    "Write a short thank-you note to a colleague.",
    "Why do cats purr?",
    "What does a CPU do?",
    "Suggest a name for a pet goldfish.",
    "How many days are there in a leap year?",
    "What is the difference between weather and climate?",
    "Give me a simple recipe for pancakes.",
    "Explain what a list is in Python.",
    "Who wrote Pride and Prejudice?",
    "What should I pack for a day at the beach?",
    "Describe the colour blue to someone who cannot see.",
    "What is the boiling point of water at sea level?",
]


@dataclass
class Reply:
    shown: str  # what the user sees
    raw: str  # what the model wrote, before cleaning
    tokens: int


def properties(reply: Reply) -> set[str]:
    found = set()
    if not reply.shown.strip():
        found.add("empty")
    else:
        lines = Counter(line.strip() for line in reply.shown.splitlines() if line.strip())
        if len(reply.shown.split()) < 3 or max(lines.values()) >= 3:
            found.add("degenerate")
    if reply.raw.removeprefix(" ").startswith(("\n", "\r\n")):
        found.add("blank start")
    return found


def ask(backend: LocalBackend, prompt: str, params: SamplingParams) -> Reply:
    """One fresh exchange; the raw tokens are read off the backend's own stream on the way."""
    raw: list[str] = []
    generate = backend.generate

    def recorded(*args, **kwargs):
        for event in generate(*args, **kwargs):
            if isinstance(event, TextDelta):
                raw.append(event.text)
            yield event

    backend.generate = recorded  # type: ignore[method-assign]
    try:
        shown = Collector()
        answer(Conversation(), backend, prompt, params, shown, notice=lambda text: None)
    finally:
        del backend.generate
    return Reply(shown.text, "".join(raw), len(raw))


def survey(form: str) -> tuple[Counter, float]:
    backend = LocalBackend(ModelSpec(name="smollm2", backend="local", format=form))
    counts: Counter = Counter()
    tokens = 0
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS)
    try:
        for prompt in PROMPTS:
            reply = ask(backend, prompt, params)
            counts.update(properties(reply))
            tokens += reply.tokens
    finally:
        backend.close()
    return counts, tokens / len(PROMPTS)


def main() -> int:
    print(f"| format | prompts | empty | blank start | degenerate | mean tokens (max {MAX_NEW_TOKENS}) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for form in sys.argv[1:] or ("falcon", "native"):
        counts, mean = survey(form)
        row = [form, len(PROMPTS), counts["empty"], counts["blank start"], counts["degenerate"], f"{mean:.1f}"]
        print("| " + " | ".join(str(cell) for cell in row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

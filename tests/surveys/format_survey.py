"""Issue 15, item 10: the bundled model's replies in the Falcon-style format and in its own
chat template, on a fixed set of everyday prompts — counted by property, not by wording.

    PYTHONPATH=src .venv/bin/python tests/surveys/format_survey.py [falcon] [native]

Greedy decoding, 128 new tokens at most. A reply is *empty* when it has no visible text
(after falconchat's cleaning), *short* when it has fewer than 5 words, and *repetitive*
when one line of 10+ characters comes back 3 times or more. Run alone (not collected by
pytest: a survey, not a test); llama.cpp's greedy text differs between CPUs, so the
counts are this machine's.
"""

from __future__ import annotations

import sys
from collections import Counter

from falconchat.backends.local import LocalBackend
from falconchat.config import ModelSpec
from falconchat.conversation import Conversation
from falconchat.exchange import answer
from falconchat.types import SamplingParams

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


class Text:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def write(self, text: str) -> None:
        self.parts.append(text)


def properties(reply: str) -> set[str]:
    found = set()
    if not reply.strip():
        found.add("empty")
    elif len(reply.split()) < 5:
        found.add("short")
    lines = Counter(line.strip() for line in reply.splitlines() if len(line.strip()) >= 10)
    if lines and max(lines.values()) >= 3:
        found.add("repetitive")
    return found


def survey(form: str) -> Counter:
    backend = LocalBackend(ModelSpec(name="smollm2", backend="local", format=form))
    counts: Counter = Counter()
    params = SamplingParams(temperature=0.0, max_new_tokens=128)
    try:
        for prompt in PROMPTS:
            conversation = Conversation()
            answer(conversation, backend, prompt, params, Text(), notice=lambda text: None)
            counts.update(properties(conversation.turns[-1].assistant))
            counts["replies"] += 1
    finally:
        backend.close()
    return counts


def main() -> int:
    for form in sys.argv[1:] or ("falcon", "native"):
        counts = survey(form)
        print(
            f"{form}: {counts['replies']} prompts · empty {counts['empty']} · short {counts['short']} · "
            f"repetitive {counts['repetitive']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Constrained decoding: a `Constraint` compiled to GBNF (backends/grammar.py), and the bundled
model held to it on the single-sequence path and inside the batching engine.

What every correct engine keeps, whatever words the model picks: each constrained reply parses
and validates against its own schema (or matches its regex in full), the single-sequence path
and the engine give the same text for the same seed, and a constrained sequence changes nothing
for the unconstrained ones decoded beside it.
"""

from __future__ import annotations

import json
import re
import threading

import jsonschema
import pytest

from falconchat.backends.grammar import compile_constraint
from falconchat.backends.local import LocalBackend
from falconchat.config_models import ModelSpec
from falconchat.errors import InputError
from falconchat.types import Constraint, SamplingParams, TextDelta
from near_tie import TOP_N, Step, near_tie_difference

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0},
        "city": {"type": "string", "maxLength": 24},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 30},
        "pages": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["title", "pages", "tags"],
}
ANSWER = r"(yes|no), because [a-z ]{5,40}\."


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


# ---- compiling (no model) ----------------------------------------------------------------------


def test_each_kind_compiles_to_a_grammar_with_a_root_rule():
    for constraint in [
        Constraint("json_schema", PERSON),
        Constraint("json_schema", json.dumps(BOOK)),  # a schema may come as its JSON text
        Constraint("json"),
        Constraint("regex", ANSWER),
        Constraint("regex", r"^\d{3}-\w+\.(?:com|org)$"),
        Constraint("gbnf", 'root ::= "a" | "b"'),
    ]:
        assert re.search(r"^root ::= ", compile_constraint(constraint), re.M), constraint


@pytest.mark.parametrize(
    ("constraint", "words"),
    [
        (Constraint("json_schema", {"type": "nope"}), "invalid JSON schema"),
        (Constraint("json_schema", {"properties": {"a": {"minLength": -1}}}), "invalid JSON schema at properties/a"),
        (Constraint("json_schema", [1, 2]), "must be a JSON object"),
        (Constraint("json_schema", "{not json"), "not valid JSON"),
        (Constraint("regex", "(ab"), "invalid regex"),
        (Constraint("regex", "a(?=b)"), "lookarounds"),
        (Constraint("regex", r"\bword"), "cannot be compiled"),
        (Constraint("regex", ""), "non-empty"),
        (Constraint("gbnf", "  "), "non-empty"),
    ],
)
def test_a_bad_schema_or_regex_is_one_clear_input_error(constraint, words):
    with pytest.raises(InputError) as caught:
        compile_constraint(constraint)
    assert words in caught.value.message
    assert "\n" not in caught.value.message


# ---- on the bundled model ------------------------------------------------------------------------


@pytest.fixture
def single(bundled_model):
    return bundled_model


@pytest.fixture(scope="module")
def batched():
    backend = LocalBackend(ModelSpec(name="smollm2", backend="local"), sequences=6)
    yield backend
    backend.close()


def reply(backend, prompt: str, params: SamplingParams):
    events = list(backend.generate(prompt, params))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def constrained(schema, seed: int, temperature: float = 0.9) -> SamplingParams:
    return SamplingParams(
        temperature=temperature, seed=seed, max_new_tokens=160, constraint=Constraint("json_schema", schema)
    )


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["single", "batched"])
def test_every_seeded_reply_validates_against_its_schema(engine, request):
    backend = request.getfixturevalue(engine)
    for seed in range(5):
        text, done = reply(backend, chat("Describe a person."), constrained(PERSON, seed))
        assert done.finish_reason == "stop", text
        jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.slow
def test_any_json_object_and_a_regex_hold_on_both_paths(single, batched):
    for backend in (single, batched):
        text, _ = reply(
            backend, chat("Give me a JSON object."), SamplingParams(temperature=0.0, constraint=Constraint("json"))
        )
        assert isinstance(json.loads(text), dict)
        for seed in range(3):
            params = SamplingParams(
                temperature=1.0, seed=seed, max_new_tokens=80, constraint=Constraint("regex", ANSWER)
            )
            text, _ = reply(backend, chat("Is the sky blue?"), params)
            assert re.fullmatch(ANSWER, text), text


@pytest.mark.slow
def test_both_paths_give_the_same_constrained_text_for_a_seed(single, batched):
    for seed in (3, 4):
        assert (
            reply(single, chat("A book, please."), constrained(BOOK, seed))[0]
            == (reply(batched, chat("A book, please."), constrained(BOOK, seed))[0])
        )


@pytest.mark.slow
def test_a_grammar_that_does_not_parse_fails_before_decoding_and_prints_nothing(single, batched, capfd):
    for backend in (single, batched):
        params = SamplingParams(constraint=Constraint("gbnf", "root ::= undefined-rule"))
        with pytest.raises(InputError, match="cannot be parsed"):
            reply(backend, chat("hi"), params)
    assert capfd.readouterr().err == ""  # llama.cpp's own parse messages do not reach the terminal


@pytest.mark.slow
def test_constrained_and_free_sequences_batched_together(batched):
    """Half the sequences held to different schemas, half free: each constrained reply validates
    against its own schema, and each free one is what it gives alone — the seeded ones the same
    text, the greedy one the same tokens up to a near tie (tests/near_tie.py)."""
    greedy = (chat("Write a long story about a dragon."), SamplingParams(temperature=0.0, max_new_tokens=48))
    seeded = [
        (chat("Explain how rain forms, in detail."), SamplingParams(temperature=0.8, seed=11, max_new_tokens=48)),
        (chat("List many fruits."), SamplingParams(temperature=0.8, seed=12, max_new_tokens=48)),
    ]
    held = [
        (chat("Describe a person."), constrained(PERSON, 21), PERSON),
        (chat("Describe a book."), constrained(BOOK, 22), BOOK),
        (chat("Describe someone else."), constrained(PERSON, 23, temperature=0.0), PERSON),
    ]
    greedy_alone = [
        Step(e.token_id, e.logprob, dict(e.top))
        for e in batched.generate(*greedy, logprobs=True, top_n=TOP_N)
        if isinstance(e, TextDelta)
    ]
    seeded_alone = [reply(batched, prompt, params)[0] for prompt, params in seeded]

    results: dict[int, list] = {}
    jobs = [greedy, *seeded] + [(p, params) for p, params, _ in held]

    def work(index: int) -> None:
        try:
            results[index] = list(batched.generate(*jobs[index]))
        except Exception as exc:
            results[index] = [exc]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    texts = ["".join(e.text for e in results[i] if isinstance(e, TextDelta)) for i in range(len(jobs))]

    greedy_together = [e.token_id for e in results[0] if isinstance(e, TextDelta)]
    assert near_tie_difference(greedy_alone, greedy_together) is None, near_tie_difference(
        greedy_alone, greedy_together
    )
    assert texts[1 : 1 + len(seeded)] == seeded_alone
    for offset, (_, _, schema) in enumerate(held):
        index = 1 + len(seeded) + offset
        text, done = texts[index], results[index][-1]
        assert getattr(done, "finish_reason", None) == "stop", (text, done)
        jsonschema.validate(json.loads(text), schema)

"""The continuous-batching engine on the bundled model, against the single-sequence path.

Eight sequences decoded together must each give the tokens the single-sequence
path gives, whatever they are batched with: greedy, the same tokens up to a near
tie (tests/near_tie.py: the batch adds in another order, so an almost-even choice
may go the other way on some CPU); seeded, the same text. Cancelling some must leave the others exact and hand their places to
waiting requests; one sequence failing must leave the others running.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from falconchat.backends import llama_batch
from falconchat.backends.local import LocalBackend
from falconchat.config_models import ModelSpec
from falconchat.errors import FalconchatError
from falconchat.types import SamplingParams, TextDelta
from near_tie import TOP_N, Step, near_tie_difference

pytestmark = pytest.mark.slow  # loads the bundled model and generates

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about rain.",
    "Explain TCP in two sentences.",
    "List three fruits.",
    "What is 12 times 7?",
    "Name a famous painter.",
    "Describe the moon.",
    "Tell me a joke about computers.",
]
PROMPTS = [f"User: {q}\nAssistant:" for q in QUESTIONS]
STOPS = ["\nUser:"]
# Counting goes on: any model continues it past 400 tokens, so a stream is still running when a test closes it.
LONG = "".join(f"{n}, " for n in range(1, 21)).rstrip()


@pytest.fixture
def single(bundled_model):
    return bundled_model


@pytest.fixture(scope="module")
def batched():
    backend = LocalBackend(ModelSpec(name="smollm2", backend="local"), sequences=8)
    yield backend
    backend.close()


def reply(backend, prompt, params, *, logprobs=False):
    events = list(backend.generate(prompt, params, STOPS, logprobs=logprobs))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def steps_alone(backend, prompt, params) -> list[Step]:
    """Each token one at a time, with its logprob and the most likely tokens at its step."""
    events = backend.generate(prompt, params, STOPS, logprobs=True, top_n=TOP_N)
    return [Step(e.token_id, e.logprob, dict(e.top)) for e in events if isinstance(e, TextDelta)]


def tokens(backend, prompt, params) -> list[int]:
    return [e.token_id for e in backend.generate(prompt, params, STOPS) if isinstance(e, TextDelta)]


def at_once(run, jobs) -> list:
    """`run(prompt, params)` for each job at once, each from its own thread; the results (or
    the exception a job raised) in order."""
    results: list = [None] * len(jobs)

    def work(index, prompt, params):
        try:
            results[index] = run(prompt, params)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=work, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def tokens_together(backend, jobs) -> list[list[int]]:
    """Each job's tokens, decoded at once."""
    return at_once(lambda prompt, params: tokens(backend, prompt, params), jobs)


def together(backend, jobs):
    """Each job's (text, Done), decoded at once."""
    return at_once(lambda prompt, params: reply(backend, prompt, params), jobs)


def assert_near_tie_equal(alone: list[list[Step]], together: list[list[int]]) -> None:
    problems = [near_tie_difference(a, b) for a, b in zip(alone, together, strict=True)]
    assert not any(problems), problems


def wait_idle(backend, timeout=5.0):
    deadline = time.monotonic() + timeout
    while backend._engine.load() != (0, 0):
        assert time.monotonic() < deadline, f"engine still busy: {backend._engine.load()}"
        time.sleep(0.02)


def test_eight_concurrent_greedy_sequences_give_the_single_sequence_tokens(single, batched):
    params = SamplingParams(temperature=0, max_new_tokens=48)
    alone = [steps_alone(single, prompt, params) for prompt in PROMPTS]
    assert len({tuple(step.token for step in steps) for steps in alone}) == len(PROMPTS), "different replies"
    for _ in range(2):  # twice: the second time every sequence starts from another's leftovers
        assert_near_tie_equal(alone, tokens_together(batched, [(prompt, params) for prompt in PROMPTS]))
    wait_idle(batched)


def test_eight_concurrent_seeded_sequences_give_the_single_sequence_text(single, batched):
    params = SamplingParams(temperature=0.8, top_k=40, top_p=0.9, repetition_penalty=1.1, max_new_tokens=48)
    jobs = [(prompt, params.with_changes(seed=100 + i)) for i, prompt in enumerate(PROMPTS)]
    expected = [reply(single, prompt, p) for prompt, p in jobs]
    for _ in range(2):
        got = together(batched, jobs)
        for (want_text, want_done), (text, done) in zip(expected, got):
            assert text == want_text
            assert (done.finish_reason, done.completion_tokens) == (
                want_done.finish_reason,
                want_done.completion_tokens,
            )
    assert len({text for text, _ in expected}) == len(jobs), "the prompts give different replies"
    wait_idle(batched)


def test_staggered_arrivals_change_nothing(single, batched):
    """Requests arriving while others are mid-reply are prefilled in the same steps as their decoding."""
    params = SamplingParams(temperature=0, max_new_tokens=40)
    alone = [steps_alone(single, prompt, params) for prompt in PROMPTS]
    results: list = [None] * len(PROMPTS)

    def work(index):
        time.sleep(0.03 * index)
        results[index] = tokens(batched, PROMPTS[index], params)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert_near_tie_equal(alone, results)


def test_cancelling_three_of_eight_leaves_the_others_exact_and_frees_their_places(single, batched):
    params = SamplingParams(temperature=0, max_new_tokens=120)
    # Counting runs to the limit on any model (an essay may end early on some CPU's model).
    keepers = ["".join(f"{n}, " for n in range(start, start + 20)).rstrip() for start in (1, 50, 250, 400, 700)]
    alone = [steps_alone(single, prompt, params) for prompt in keepers]
    assert all(len(steps) == 120 for steps in alone), "the kept replies run to the end"
    queued_params = SamplingParams(temperature=0, max_new_tokens=8)
    queued_alone = [steps_alone(single, prompt, queued_params) for prompt in PROMPTS[:3]]
    queued_tokens: dict[int, list[int]] = {}
    finished_at: dict[str, float] = {}
    cancelled_after: list[int] = []
    kept: dict[int, list[int]] = {}

    def keep(index):
        kept[index] = tokens(batched, keepers[index], params)
        finished_at[f"keep{index}"] = time.monotonic()

    def cancel():
        stream = batched.generate(LONG, params.with_changes(max_new_tokens=400), STOPS)
        count = 0
        for event in stream:
            count += isinstance(event, TextDelta)
            if count == 10:
                break
        stream.close()
        cancelled_after.append(count)

    def queued(index):
        queued_tokens[index] = tokens(batched, PROMPTS[index], queued_params)
        finished_at[f"queued{index}"] = time.monotonic()

    workers = [threading.Thread(target=keep, args=(i,)) for i in range(5)] + [
        threading.Thread(target=cancel) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    while batched._engine.load()[0] < 8:  # all eight hold a sequence
        assert time.monotonic() < deadline, batched._engine.load()
        time.sleep(0.002)
    extra = [threading.Thread(target=queued, args=(i,)) for i in range(3)]
    for worker in extra:
        worker.start()
    time.sleep(0.1)
    assert batched._engine.load()[1] >= 1, "with all eight sequences busy, requests wait"
    for worker in workers + extra:
        worker.join(timeout=300)

    assert_near_tie_equal(alone, [kept[i] for i in range(5)])
    assert cancelled_after == [10, 10, 10]
    assert_near_tie_equal(queued_alone, [queued_tokens[i] for i in range(3)])
    # The waiting requests took the cancelled sequences' places while the long replies still ran.
    assert max(finished_at[f"queued{i}"] for i in range(3)) < min(finished_at[f"keep{i}"] for i in range(5))
    wait_idle(batched)


def test_closing_a_stream_stops_its_sequence_within_a_step(batched):
    stream = batched.generate(LONG, SamplingParams(temperature=0, max_new_tokens=400), STOPS)
    for count, _event in enumerate(stream):
        if count == 5:
            break
    stream.close()
    wait_idle(batched, timeout=1.0)


def test_one_failing_sequence_ends_with_an_error_and_the_others_run_on(single, batched, monkeypatch):
    params = SamplingParams(temperature=0, max_new_tokens=32)
    alone = [steps_alone(single, prompt, params) for prompt in PROMPTS[:4]]

    def broken_logprob(self, row, token, top_n):
        raise RuntimeError("injected failure")

    # Only the request that asks for logprobs reaches the broken code.
    monkeypatch.setattr(llama_batch.BatchEngine, "_logprob", broken_logprob)
    outcome: dict = {}

    def failing():
        try:
            reply(batched, PROMPTS[5], params, logprobs=True)
        except FalconchatError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=failing)
    thread.start()
    got = tokens_together(batched, [(prompt, params) for prompt in PROMPTS[:4]])
    thread.join(timeout=60)
    assert outcome["error"] == "the local model failed: injected failure"
    assert_near_tie_equal(alone, got)
    wait_idle(batched)


def test_a_follow_up_turn_reuses_its_cached_prefix_while_others_run(batched):
    engine = batched._engine
    params = SamplingParams(temperature=0, max_new_tokens=24)
    first = "User: " + "Here is some context about llamas. " * 30 + "\nSummarise it.\nAssistant:"
    text, done = reply(batched, first, params)
    # Other conversations come and go in between (fewer than the free sequences).
    together(batched, [(prompt, params) for prompt in PROMPTS[:6]])
    follow_up = first + " " + text + "\nUser: And in one word?\nAssistant:"
    before = engine.prompt_tokens_read
    _, done2 = reply(batched, follow_up, params)
    read = engine.prompt_tokens_read - before
    assert done2.prompt_tokens > done.prompt_tokens + 10
    assert read < done2.prompt_tokens - done.prompt_tokens + 5, f"read {read} of {done2.prompt_tokens} prompt tokens"


def test_a_prompt_too_long_for_a_sequence_is_refused(batched):
    with pytest.raises(FalconchatError, match="context holds"):
        reply(batched, "word " * (batched.context_length + 10), SamplingParams(temperature=0, max_new_tokens=8))


def test_closing_the_engine_ends_running_streams_with_an_error():
    backend = LocalBackend(ModelSpec(name="smollm2", backend="local"), sequences=2)
    stream = backend.generate(LONG, SamplingParams(temperature=0, max_new_tokens=400), STOPS)
    next(stream)
    closer = threading.Thread(target=backend.close)
    closer.start()
    with pytest.raises(FalconchatError, match="shutting down"):
        for _ in stream:
            pass
    closer.join(timeout=10)
    assert not closer.is_alive()


class ScriptedLoad:
    """A thread policy whose measured load the test sets: `others` busy programs on 2 cores."""

    fixed = None
    cores = 2

    def __init__(self):
        self.free = 2

    def due(self) -> bool:
        return True

    def threads(self) -> int:
        return self.free


def test_the_engine_decodes_with_the_cores_other_programs_leave_free():
    """Like the single path, the batching engine (serve, batch) moves to one thread when a
    busy program takes a core, and back when it ends: a descheduled thread stalls the others."""
    import llama_cpp

    load = ScriptedLoad()
    backend = LocalBackend(ModelSpec(name="smollm2", backend="local"), sequences=2)
    backend.thread_policy = load  # type: ignore[assignment]
    try:
        backend.load()
        engine = backend._engine
        params = SamplingParams(temperature=0.0, max_new_tokens=4)
        assert llama_cpp.llama_n_threads(engine._ctx) == 2
        load.free = 1
        tokens(backend, PROMPTS[0], params)
        assert llama_cpp.llama_n_threads(engine._ctx) == 1
        load.free = 2
        tokens(backend, PROMPTS[1], params)
        assert llama_cpp.llama_n_threads(engine._ctx) == 2
    finally:
        backend.close()


def test_each_sequence_frees_its_sampler_itself_not_through_the_garbage_collector(batched, monkeypatch):
    """llama-cpp-python's LlamaSampler holds itself in a reference cycle until it is closed: left
    to the cyclic garbage collector, it was freed in whatever thread a collection ran, at whatever
    depth (in serve, once, while a request's JSON was parsed at the recursion limit: each __del__
    failed with RecursionError). The engine closes a sequence's sampler when the sequence ends
    or is dropped as cancelled, so with the collector off it is freed all the same."""
    batched.load()
    engine = batched._engine
    samplers: list[weakref.ref] = []
    real = llama_batch.make_sampler

    def recording(*args, **kwargs):
        sampler = real(*args, **kwargs)
        samplers.append(weakref.ref(getattr(sampler, "chain", sampler)))  # a grammar's: its chain holds the cycle
        return sampler

    monkeypatch.setattr(llama_batch, "make_sampler", recording)
    prompt = batched.tokens(LONG)
    params = SamplingParams(temperature=0, max_new_tokens=4)
    gc.collect()
    gc.disable()
    try:
        assert len(list(engine.tokens(prompt, params, 4, seed=1))) == 4  # runs to its end
        stream = engine.tokens(prompt, params, 400, seed=1)
        next(stream), next(stream)
        stream.close()  # cancelled while it runs
        assert list(engine.tokens(prompt, params, 4, seed=1, grammar="root ::= [0-9]+"))  # constrained
        deadline = time.monotonic() + 5  # a cancelled sequence is dropped at the engine's next step
        while any(ref() is not None for ref in samplers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(samplers) == 3
        assert [ref() for ref in samplers] == [None, None, None], "a sampler waits for the garbage collector"
    finally:
        gc.enable()


def test_a_sequence_whose_reader_falls_behind_is_paused_and_resumes_unchanged(batched):
    """A caller that takes nothing (serve's client that reads nothing of its stream) costs no
    decoding: its sequence stops within BACKLOG_TOKENS tokens, and goes on when it reads, with
    the tokens it would have had."""
    batched.load()
    engine = batched._engine
    prompt = batched.tokens(LONG)
    params = SamplingParams(temperature=0, max_new_tokens=120)
    straight = [token for token, _, _ in engine.tokens(prompt, params, 120, seed=1)]
    assert len(straight) == 120
    stream = engine.tokens(prompt, params, 120, seed=1)
    paused = [next(stream)[0]]
    time.sleep(1.5)  # long enough to decode the rest at any speed this model runs at on a CPU
    running = [slot for slot in engine._slots if slot.request is not None]
    assert running, "it decoded all its tokens ahead of its reader"
    assert running[0].generated <= 1 + llama_batch.BACKLOG_TOKENS, "it decoded ahead of its reader"
    paused += [token for token, _, _ in stream]
    assert paused == straight


def test_plain_greedy_requests_one_after_another_each_end_and_the_engine_goes_on(batched):
    # The greedy fast path's sampler (Argmax) is closed as its sequence ends, like every sampler:
    # an Argmax without close() killed the engine's thread at the first request's end.
    params = SamplingParams(temperature=0, max_new_tokens=6)
    for prompt in PROMPTS[:3]:
        events = list(batched.generate(prompt, params))
        assert events[-1].finish_reason in ("length", "stop")
        assert events[-1].completion_tokens >= 1


def test_sequences_whose_readers_stall_give_their_places_to_a_waiting_request(single, batched):
    """Every sequence paused (eight callers that read nothing, as serve's clients that never
    read their streams): a ninth request is not held up until they read — a sequence paused
    for SET_ASIDE_AFTER_S is set aside for it — and each set-aside reply, when its caller
    reads again, goes on as it would have (its tokens read again, its sampler kept)."""
    batched.load()
    engine = batched._engine
    params = SamplingParams(temperature=0, max_new_tokens=120)
    prompt = batched.tokens(LONG)
    stalled = [engine.tokens(prompt, params, 120, seed=1) for _ in range(8)]
    firsts = [next(stream)[0] for stream in stalled]  # each admitted, then nobody reads
    answered: list = []
    ninth = threading.Thread(target=lambda: answered.append(reply(batched, PROMPTS[0], GREEDY_SHORT)))
    ninth.start()
    ninth.join(timeout=60)
    assert answered, "the ninth request waited for the stalled readers"
    assert engine.load()[1] >= 1  # one at least is set aside, waiting for its reader
    together = [[first] + [token for token, _, _ in stream] for first, stream in zip(firsts, stalled, strict=True)]
    alone = steps_alone(single, LONG, params)
    assert_near_tie_equal([alone] * 8, together)
    wait_idle(batched)


GREEDY_SHORT = SamplingParams(temperature=0, max_new_tokens=8)

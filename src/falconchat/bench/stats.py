"""The figures bench reports: a row (value, baseline, ratio) and the statistics over repetitions."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Row:
    what: str
    value: float
    unit: str
    baseline: str
    baseline_value: float | None
    target: str
    p95: float | None = None
    # A row measured in alternated pairs: the median of each pair's ratio (steadier on a shared
    # machine than the ratio of the two medians, as each pair saw the same moment's load).
    pair_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.pair_ratio is not None:
            return self.pair_ratio
        return self.value / self.baseline_value if self.baseline_value else None


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

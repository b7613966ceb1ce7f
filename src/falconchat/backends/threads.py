"""How many threads llama.cpp decodes with: the cores other programs leave free, measured as
we go, never simply all of them.

llama.cpp's threads meet at a spinning barrier after every step, so one thread that the
system deschedules for a competing process stalls the others: on the 2-core reference
machine, with one busy process beside it, 2 threads decode at ~0.4x the speed of 1, while
idle they are ~1.4x faster (docs/performance.md). So the backend asks `ThreadPolicy` before
each reply and about twice a second while decoding, and moves llama.cpp between thread
counts (`llama_set_n_threads`; greedy replies were checked to be the same at 1, 2 and 3
threads). The batching engine (`serve`, `batch`) asks the same policy between its steps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

RECHECK_S = 0.5  # how often a running reply looks again
MIN_WINDOW_S = 0.1  # a shorter window says little; the first reply waits for this much
SPARE = 0.25  # a core counts as free when others leave at least 75% of it


def usable_cores() -> int:
    """The physical cores this process may run on (a second hardware thread of a core adds little)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def choose_threads(cores: int, others_busy: float) -> int:
    """As many threads as there are cores left free by the other programs' `others_busy` cores."""
    return max(1, min(cores, int(cores - others_busy + SPARE)))


def _busy_cpu_s() -> float | None:
    """CPU seconds spent by every program since boot (all CPUs), from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(v) for v in fields[1:])
    steal = rest[0] if rest else 0  # a virtual machine's CPU taken by the host is not ours to use
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class ThreadPolicy:
    """Measures how many cores other programs keep busy (all CPU time less this process's own)
    and turns that into a thread count. `fixed` (FALCONCHAT_THREADS, `threads` in a model's
    config) always wins."""

    def __init__(
        self,
        fixed: int | None = None,
        cores: int | None = None,
        busy_cpu_s: Callable[[], float | None] = _busy_cpu_s,
        own_cpu_s: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.fixed = fixed
        self.cores = cores or usable_cores()
        self._busy_cpu_s, self._own_cpu_s, self._clock, self._sleep = busy_cpu_s, own_cpu_s, clock, sleep
        self._mark = self._sample()

    @property
    def adapts(self) -> bool:
        return self.fixed is None and self.cores > 1

    def _sample(self) -> tuple[float, float | None, float]:
        return self._clock(), self._busy_cpu_s(), self._own_cpu_s()

    def others_busy(self) -> float | None:
        """Cores kept busy by other programs since the last call (waiting for a short window
        to grow to MIN_WINDOW_S); None where the system does not say (then: the load average)."""
        started, busy, own = self._mark
        wait = MIN_WINDOW_S - (self._clock() - started)
        if wait > 0:
            self._sleep(wait)
        self._mark = now, busy_now, own_now = self._sample()
        if busy is None or busy_now is None or now <= started:
            return _load_average()
        return max(0.0, ((busy_now - busy) - (own_now - own)) / (now - started))

    def threads(self) -> int:
        """The thread count to use now (sampling the load: call it at most every RECHECK_S)."""
        if self.fixed is not None:
            return self.fixed
        if not self.adapts:
            return self.cores
        others = self.others_busy()
        return self.cores if others is None else choose_threads(self.cores, others)

    def due(self) -> bool:
        """Whether a running reply should look again."""
        return self.adapts and self._clock() - self._mark[0] >= RECHECK_S


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None

"""The thread policy: the cores other programs leave free, measured as CPU time used by
everyone less our own; FALCONCHAT_THREADS / `threads` always win."""

from __future__ import annotations

import os

import pytest

from falconchat.backends import threads as threads_module
from falconchat.backends.threads import RECHECK_S, ThreadPolicy, choose_threads, usable_cores


@pytest.mark.parametrize(
    ("cores", "others", "expected"),
    [
        (2, 0.0, 2),
        (2, 0.2, 2),  # a little background work leaves both cores
        (2, 0.3, 1),
        (2, 1.0, 1),  # one busy program: one thread
        (2, 2.5, 1),  # never fewer than one
        (8, 0.0, 8),
        (8, 3.0, 5),
        (1, 0.0, 1),
    ],
)
def test_choose_threads(cores, others, expected):
    assert choose_threads(cores, others) == expected


class Clock:
    def __init__(self):
        self.now, self.busy, self.own, self.slept = 100.0, 0.0, 0.0, 0.0

    def pass_time(self, seconds: float, others: float, ours: float = 0.0) -> None:
        """`seconds` go by with other programs keeping `others` cores busy and us `ours`."""
        self.now += seconds
        self.busy += (others + ours) * seconds
        self.own += ours * seconds

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds

    def policy(self, fixed=None, cores=2) -> ThreadPolicy:
        return ThreadPolicy(
            fixed=fixed,
            cores=cores,
            busy_cpu_s=lambda: self.busy,
            own_cpu_s=lambda: self.own,
            clock=lambda: self.now,
            sleep=self.sleep,
        )


def test_our_own_work_is_not_load():
    clock = Clock()
    policy = clock.policy()
    clock.pass_time(2.0, others=0.0, ours=2.0)  # our own threads, spinning on both cores
    assert policy.threads() == 2


def test_a_busy_program_drops_to_one_thread_and_its_end_brings_two_back():
    clock = Clock()
    policy = clock.policy()
    clock.pass_time(1.0, others=1.0, ours=1.0)
    assert policy.threads() == 1
    clock.pass_time(1.0, others=0.05, ours=1.0)
    assert policy.threads() == 2


def test_a_short_window_is_waited_out_once():
    clock = Clock()
    policy = clock.policy()
    clock.pass_time(0.02, others=0.0)
    assert policy.threads() == 2
    assert clock.slept == pytest.approx(0.08)
    clock.pass_time(1.0, others=1.0)
    policy.threads()
    assert clock.slept == pytest.approx(0.08)  # a long window needs no wait


def test_due_after_the_recheck_interval():
    clock = Clock()
    policy = clock.policy()
    assert not policy.due()
    clock.pass_time(RECHECK_S, others=0.0)
    assert policy.due()
    policy.threads()
    assert not policy.due()


def test_a_fixed_count_wins_and_never_measures():
    clock = Clock()
    policy = clock.policy(fixed=3)
    clock.pass_time(1.0, others=2.0)
    assert policy.threads() == 3 and not policy.due() and not policy.adapts
    assert clock.slept == 0


def test_one_core_never_adapts():
    clock = Clock()
    policy = clock.policy(cores=1)
    clock.pass_time(1.0, others=2.0)
    assert policy.threads() == 1 and not policy.adapts


def test_without_proc_stat_the_load_average_is_used(monkeypatch):
    monkeypatch.setattr(threads_module, "_load_average", lambda: 1.0)
    clock = Clock()
    policy = ThreadPolicy(cores=2, busy_cpu_s=lambda: None, clock=lambda: clock.now, sleep=clock.sleep)
    clock.pass_time(1.0, others=0.0)
    assert policy.threads() == 1


def test_usable_cores_counts_physical_cores_we_may_run_on():
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_the_real_proc_stat_reads():
    busy = threads_module._busy_cpu_s()
    assert busy is None or busy > 0

"""Issue 28 item 2: refusals are paced, so that clients that ask again the moment they are
refused (ignoring Retry-After) cannot make turning them away cost the model its CPU. A fake
clock: the pace's arithmetic, not the machine's speed (the served-tokens figure is bench's
`overload` row)."""

from __future__ import annotations

import pytest

from falconchat.serve import relay
from falconchat.serve.relay import RETRY_AFTER_S, RefusalPace


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(relay.time, "monotonic", lambda: now[0])
    return now


def test_a_refusal_after_a_quiet_spell_is_sent_at_once(clock):
    pace = RefusalPace(per_s=100)
    assert pace.delay() == 0
    clock[0] += 0.5
    assert pace.delay() == 0


def test_a_flood_of_refusals_is_spaced_and_none_waits_longer_than_retry_after(clock):
    pace = RefusalPace(per_s=100)
    delays = [pace.delay() for _ in range(300)]  # 300 clients refused at the same instant
    assert delays[:3] == pytest.approx([0.0, 0.01, 0.02])
    assert delays == sorted(delays)
    assert max(delays) == pytest.approx(RETRY_AFTER_S)
    # Together they are answered at about 100 a second: the first second's worth, then the cap.
    assert sum(d < RETRY_AFTER_S for d in delays) == pytest.approx(100, abs=1)


def test_the_pace_recovers_within_retry_after_once_the_flood_ends(clock):
    pace = RefusalPace(per_s=100)
    for _ in range(10_000):
        pace.delay()
    clock[0] += RETRY_AFTER_S + 0.011
    assert pace.delay() == 0

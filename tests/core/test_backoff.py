"""The one back-off policy (lrsa/backoff.py): exponential, capped, jitter as chosen. Its users'
own timings are tested where they are (test_batch_scheduler: half-jittered batch retries with an
injected draw; test_scorer_fault: in-place retries)."""

from __future__ import annotations

import pytest

from lrsa.backoff import Backoff


def test_delays_grow_by_the_factor_up_to_the_cap():
    b = Backoff(initial_s=0.5, max_s=10.0, jitter=0)
    assert [b.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.delay(10_000) == 10.0  # a long outage neither overflows nor exceeds the cap


def test_jitter_draws_within_its_share_of_the_delay():
    seen = []

    def draw(a, b):
        seen.append((a, b))
        return a  # the smallest draw allowed

    assert Backoff(1.0, 8.0, jitter=0.5).delay(2, draw) == 2.0 and seen == [(0.5, 1.0)]
    assert Backoff(1.0, 8.0, jitter=1.0).delay(2, draw) == 0.0  # full jitter may retry at once
    for n in range(6):
        assert 0 <= Backoff(0.1, 5.0).delay(n) <= min(5.0, 0.1 * 2 ** n)
    with pytest.raises(ValueError):
        Backoff(jitter=1.5)

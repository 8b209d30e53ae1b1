"""The shift detector (lrsa/shift.py), pure: closed windows in, alert events out."""

from __future__ import annotations

import math
import random

import pytest

from lrsa.shift import AlertEvent, ShiftParams, on_closed_window, z_two_proportions

P = ShiftParams(baseline_windows=6, min_mentions=20, min_baseline_mentions=40, z_fire=3.0, z_resolve=1.0,
                min_share_delta=0.15)


def counts(neg: int, pos: int, neu: int) -> dict:
    return {"negative": neg, "positive": pos, "neutral": neu}


def feed(windows: list[dict], params: ShiftParams = P, entity: str = "Acme") -> list[list[dict]]:
    """Feed windows (counts) one a minute; the events of each window."""
    state, out = None, []
    for i, c in enumerate(windows):
        ev = {"negative": [[f"n{i}-{k}", f"bad {k}"] for k in range(min(c["negative"], 10))],
              "positive": [[f"p{i}-{k}", f"good {k}"] for k in range(min(c["positive"], 10))]}
        state, events = on_closed_window(state, entity, "1m", i * 60_000, c, ev, params, now_ms=10**12)
        out.append(events)
    return out


def test_z_matches_the_textbook_formula():
    x1, n1, x0, n0 = 30, 40, 40, 200
    p = (x1 + x0) / (n1 + n0)
    want = (x1 / n1 - x0 / n0) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n0))
    assert z_two_proportions(x1, n1, x0, n0) == pytest.approx(want)
    assert z_two_proportions(5, 10, 50, 100) == pytest.approx(0.0)
    assert z_two_proportions(0, 0, 5, 10) == 0.0 and z_two_proportions(0, 10, 0, 10) == 0.0


def test_planted_shift_fires_once_then_resolves_with_evidence():
    stable = [counts(6, 14, 10)] * 6
    shifted = [counts(22, 4, 4)] * 3
    back = [counts(6, 14, 10)] * 2
    events = feed(stable + shifted + back)
    assert all(e == [] for e in events[:6])
    fired = events[6]
    assert [(e["type"], e["direction"]) for e in fired] == [("fired", "negative")]
    e = fired[0]
    AlertEvent.model_validate(e)
    assert e["counts"] == counts(22, 4, 4) and e["baseline_counts"] == counts(36, 84, 60)
    assert e["share"] == pytest.approx(22 / 30) and e["baseline_share"] == pytest.approx(36 / 180)
    assert e["z"] >= 3.0
    assert e["post_ids"] == [f"n6-{k}" for k in range(10)] and e["rationales"][0] == "bad 0"
    assert e["episode_id"] == "Acme|negative|1970-01-01T00:06:00Z"
    assert events[7] == [] and events[8] == []  # one event per episode
    resolved = events[9]
    assert [(r["type"], r["direction"], r["episode_id"]) for r in resolved] == \
        [("resolved", "negative", e["episode_id"])]
    # the baseline stayed frozen through the episode: the resolve compares against the stable windows
    assert resolved[0]["baseline_counts"] == counts(36, 84, 60)
    assert events[10] == []


def test_three_posts_do_not_page_anyone():
    events = feed([counts(6, 14, 10)] * 6 + [counts(3, 0, 0)] * 3)
    assert all(e == [] for e in events)


def test_stable_noise_does_not_fire():
    rng = random.Random(3)
    windows = []
    for _ in range(200):
        c = counts(0, 0, 0)
        for _ in range(40):
            r = rng.random()
            c["negative" if r < 0.2 else "positive" if r < 0.65 else "neutral"] += 1
        windows.append(c)
    fired = [e for es in feed(windows) for e in es if e["type"] == "fired"]
    assert len(fired) <= 1  # z >= 3 one-sided: ~0.1% of windows per direction by chance
    # the same noise with a planted shift at the end does fire
    shifted = windows + [counts(30, 5, 5)]
    assert any(e["type"] == "fired" and e["direction"] == "negative" for e in feed(shifted)[-1])


def test_positive_direction_and_watchlist():
    seq = [counts(6, 10, 14)] * 6 + [counts(2, 26, 2)]
    assert [(e["type"], e["direction"]) for e in feed(seq)[-1]] == [("fired", "positive")]
    watch_other = ShiftParams(**{**P.__dict__, "watchlist": ("Delta Air Lines",)})
    assert feed(seq, watch_other)[-1] == []
    watch_this = ShiftParams(**{**P.__dict__, "watchlist": ("acme",)})
    assert feed(seq, watch_this)[-1] != []


def test_small_baseline_or_small_move_does_not_fire():
    # baseline below min_baseline_mentions (2 windows x 15)
    assert feed([counts(2, 8, 5)] * 2 + [counts(25, 3, 2)])[-1] == []
    # a significant but tiny move at high volume (share 0.20 -> 0.26) stays below min_share_delta
    big = [counts(2000, 5000, 3000)] * 6 + [counts(2600, 4400, 3000)]
    assert feed(big)[-1] == []

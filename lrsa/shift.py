"""Sentiment shift detector (pure: no Kafka, no clock): one entity's closed windows in, in order,
alert events out.

Statistic: a one-sided two-proportion z-test of the window's negative (or positive) share
against the entity's own trailing baseline (the pooled counts of its last `baseline_windows`
closed windows that had mentions, windows inside an open episode left out):

    z = (p_w - p_b) / sqrt(p (1 - p) (1/n_w + 1/n_b)),   p = (x_w + x_b) / (n_w + n_b)

It fires when z >= z_fire, the share moved by at least min_share_delta, the window has at least
min_mentions mentions and the baseline at least min_baseline_mentions. The baseline is itself a
sample, so its noise is in the variance (a test against a fixed share would page on a baseline
of a few posts); the volume floors keep the normal approximation sane and stop three posts from
paging anyone; the share floor stops tiny but "significant" moves at very high volume. One event
per episode: while an episode is open no other "fired" is sent for that entity and direction,
and the baseline is frozen (the shifted windows do not become the new normal); the episode
resolves at the first window with enough volume whose z is at or below z_resolve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lrsa.aggregates import SENTIMENTS, SentimentCounts, iso_ms

ALERT_SCHEMA_VERSION = "1.0"
DIRECTIONS = ("negative", "positive")


@dataclass(frozen=True)
class ShiftParams:
    baseline_windows: int = 12
    min_mentions: int = 20
    min_baseline_mentions: int = 40
    z_fire: float = 3.0
    z_resolve: float = 1.0
    min_share_delta: float = 0.15
    watchlist: tuple[str, ...] = field(default=())  # empty: any entity (above min_mentions)

    def watched(self, entity: str) -> bool:
        if not self.watchlist:
            return True
        folded = entity.casefold()
        return any(w.casefold() == folded for w in self.watchlist)


def z_two_proportions(x1: int, n1: int, x0: int, n0: int) -> float:
    """z of p1 = x1/n1 against p0 = x0/n0 with the pooled variance; 0 when undefined."""
    if n1 <= 0 or n0 <= 0:
        return 0.0
    p = (x1 + x0) / (n1 + n0)
    var = p * (1 - p) * (1 / n1 + 1 / n0)
    if var <= 0:
        return 0.0
    return (x1 / n1 - x0 / n0) / math.sqrt(var)


def new_state() -> dict:
    """Detector state of one entity (JSON-serialisable: stored in the stream's state store)."""
    return {"history": [], "episodes": {d: None for d in DIRECTIONS}}


def _counts(c: dict) -> dict:
    return {s: int(c.get(s, 0)) for s in SENTIMENTS}


def on_closed_window(state: dict | None, entity: str, window: str, start_ms: int, counts: dict,
                     evidence: dict, params: ShiftParams, now_ms: int) -> tuple[dict, list[dict]]:
    """Feed one closed window of `entity`; returns the new state and the alert events (0-2).

    counts: {"positive", "neutral", "negative"}; evidence: {"negative": [[post_id, rationale]],
    "positive": [...]} (the posts behind each direction, as the window kept them).
    """
    state = state or new_state()
    counts = _counts(counts)
    n = sum(counts.values())
    base = {s: sum(h[1][s] for h in state["history"]) for s in SENTIMENTS}
    nb = sum(base.values())
    events = []
    for d in DIRECTIONS:
        share = counts[d] / n if n else 0.0
        base_share = base[d] / nb if nb else 0.0
        z = z_two_proportions(counts[d], n, base[d], nb)
        episode = state["episodes"][d]
        enough = n >= params.min_mentions
        kind = None
        if episode is None:
            if (enough and params.watched(entity) and nb >= params.min_baseline_mentions
                    and z >= params.z_fire and share - base_share >= params.min_share_delta):
                episode = {"id": f"{entity}|{d}|{iso_ms(start_ms)}", "since_ms": start_ms,
                           "baseline": base}
                state["episodes"][d] = episode
                kind = "fired"
        elif enough and z <= params.z_resolve:
            state["episodes"][d] = None
            kind = "resolved"
        if kind:
            items = [e for e in evidence.get(d, []) if isinstance(e, (list, tuple)) and len(e) == 2]
            events.append({
                "schema_version": ALERT_SCHEMA_VERSION, "type": kind, "entity": entity,
                "direction": d, "window": window, "window_start": iso_ms(start_ms),
                "share": round(share, 6), "baseline_share": round(base_share, 6), "z": round(z, 4),
                "counts": counts, "baseline_counts": base,
                "post_ids": [str(e[0]) for e in items], "rationales": [str(e[1]) for e in items],
                "episode_id": episode["id"], "at": iso_ms(now_ms),
            })
    if n and all(state["episodes"][d] is None for d in DIRECTIONS):
        state["history"] = (state["history"] + [[start_ms, counts]])[-params.baseline_windows:]
    return state, events


class AlertEvent(BaseModel):
    """A shift alert on the `lrsa.alerts` topic, keyed `entity|direction`."""

    model_config = ConfigDict(extra="forbid", title="LRSA sentiment shift alert")
    schema_version: Literal["1.0"] = ALERT_SCHEMA_VERSION
    type: Literal["fired", "resolved"]
    entity: str
    direction: Literal["negative", "positive"]
    window: str = Field(description="window size label of the closed window that decided")
    window_start: str = Field(description="ISO 8601 UTC start of that window")
    share: float = Field(ge=0, le=1, description="the direction's share of the window's mentions")
    baseline_share: float = Field(ge=0, le=1, description="its share over the trailing baseline")
    z: float = Field(description="two-proportion z of share against baseline_share")
    counts: SentimentCounts
    baseline_counts: SentimentCounts
    post_ids: list[str] = Field(description="posts behind the move (that direction's mentions)")
    rationales: list[str] = Field(description="their rationales, same order as post_ids")
    episode_id: str = Field(description="same id on the fired and the resolved event of one episode")
    at: str = Field(description="ISO 8601 UTC wall-clock time the event was made")

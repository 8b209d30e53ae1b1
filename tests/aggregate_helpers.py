"""Helpers of the aggregator tests and `lrsa bench aggregate`'s twin checks: labelled result
sequences with event times we choose, producing them, reading the aggregates/alerts topics, and
the expected window counts computed straight from the input."""

from __future__ import annotations

import json
import random
from collections import defaultdict

from lrsa.aggregates import iso_ms

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: historical event time, no wall-clock waits


def result(post_id: str, t_ms: int, aspects: list[tuple[str, str]], rationale: str = "") -> dict:
    """A contract v1.1 result: aspects as (entity, sentiment); surface term = entity."""
    return {"schema_version": "1.1", "post_id": post_id, "event_time": iso_ms(t_ms),
            "event_time_source": "created_at", "scored": True, "rationale": rationale or f"why {post_id}",
            "aspects": [{"term": e, "entity": e, "start": 0, "end": len(e), "sentiment": s,
                         "confidence": 0.5 + 0.1 * (i % 5)} for i, (e, s) in enumerate(aspects)]}


def shift_sequence(window_ms: int, windows: int, per_window: int, shift_entity: str, shift_at: int,
                   stable: list[str], shift_end: int | None = None, seed: int = 7) -> list[dict]:
    """Every entity gets `per_window` mentions per window, ~20% negative, 45% positive; in windows
    [shift_at, shift_end) `shift_entity` turns ~75% negative. One aspect per result, event times
    spread in their window, results in event-time order."""
    shift_end = windows if shift_end is None else shift_end
    rng = random.Random(seed)
    out = []
    n = 0
    for w in range(windows):
        for entity in [shift_entity, *stable]:
            neg = 0.75 if (entity == shift_entity and shift_at <= w < shift_end) else 0.2
            for i in range(per_window):
                r = rng.random()
                s = "negative" if r < neg else ("positive" if r < neg + (1 - neg) * 0.55 else "neutral")
                t = BASE_MS + w * window_ms + int((i + 0.5) * window_ms / per_window)
                out.append(result(f"p{n}", t, [(entity, s)], rationale=f"{entity} was {s} in p{n}"))
                n += 1
    out.sort(key=lambda r: r["event_time"])
    return out


def expected_windows(results: list[dict], label: str, window_ms: int) -> dict[str, dict]:
    """key entity|label|window_start -> counts, straight from the input (no stream code)."""
    out: dict[str, dict] = defaultdict(lambda: {"positive": 0, "neutral": 0, "negative": 0})
    from lrsa.aggregates import parse_time_ms

    for r in results:
        t = parse_time_ms(r["event_time"])
        start = t - t % window_ms
        for a in r["aspects"]:
            out[f"{a['entity']}|{label}|{iso_ms(start)}"][a["sentiment"]] += 1
    return dict(out)


def produce(bootstrap: str, topic: str, results: list[dict], raw: list[bytes] = ()) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for r in results:
            p.send(topic, key=r["post_id"].encode(), value=json.dumps(r).encode())
        for b in raw:
            p.send(topic, value=b)
        p.flush(timeout=60)
    finally:
        p.close()


def read_topic(bootstrap: str, topic: str, idle_s: float = 2.0, deadline_s: float = 60.0) -> list[tuple[str, dict]]:
    """Every committed record (read_committed) as (key, value), until `idle_s` without one."""
    import time

    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                      enable_auto_commit=False, isolation_level="read_committed",
                      consumer_timeout_ms=int(idle_s * 1000))
    out = []
    end = time.monotonic() + deadline_s
    try:
        for m in c:
            out.append((m.key.decode() if m.key else None, json.loads(m.value)))
            if time.monotonic() > end:
                break
    finally:
        c.close()
    return out


def last_per_key(records: list[tuple[str, dict]]) -> dict[str, dict]:
    """The compacted view: the latest value per key (records of one key share a partition)."""
    return {k: v for k, v in records}

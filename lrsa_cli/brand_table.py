"""The per-entity table `lrsa demo` prints at the end: mentions, positive/neutral/negative and
shift alerts per entity, computed in-process from the demo's result records with the core
modules (lrsa.aggregates for mentions and event-time windows, lrsa.shift for the alerts), the
same way `lrsa aggregate` does on the stream, without another Kafka consumer.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from lrsa.aggregates import SENTIMENTS, mentions_of, parse_time_ms, window_add, window_init
from lrsa.shift import ShiftParams, on_closed_window

DEMO_WINDOW_MS = 3_600_000  # 1 h: the sample spans six hours of event time
# Volume floors sized for the demo's few hundred posts (the stream defaults want 20 per window,
# 40 in the baseline): a handful of posts still cannot fire, a planted shift of ~10 an hour can.
DEMO_SHIFT = ShiftParams(baseline_windows=12, min_mentions=8, min_baseline_mentions=15,
                         z_fire=3.0, z_resolve=1.0, min_share_delta=0.15)


def entity_table(results: Iterable[dict], window_ms: int = DEMO_WINDOW_MS,
                 params: ShiftParams = DEMO_SHIFT) -> list[dict]:
    """Rows {entity, mentions, positive, neutral, negative, alerts, alert_windows}, most mentioned
    first (ties by name). alerts counts the "fired" shift events of the entity's event-time
    windows (fed in order, as closed windows); a result without a readable `event_time` lands in
    one window at time 0. Bad records are skipped (mentions_of never raises)."""
    windows: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in results:
        ms = parse_time_ms(r.get("event_time")) if isinstance(r, dict) else None
        start = (ms // window_ms) * window_ms if ms is not None else 0
        for m in mentions_of(r):
            acc = windows[m["entity"]].setdefault(start, window_init())
            window_add(acc, m)
    rows = []
    for entity, by_start in windows.items():
        counts = {s: sum(acc["counts"][s] for acc in by_start.values()) for s in SENTIMENTS}
        state, fired = None, []
        for start in sorted(by_start):
            acc = by_start[start]
            state, events = on_closed_window(state, entity, "demo", start, acc["counts"],
                                             acc["evidence"], params, now_ms=start + window_ms)
            fired += [f"{e['direction']} from {e['window_start']}" for e in events if e["type"] == "fired"]
        rows.append({"entity": entity, "mentions": sum(counts.values()), **counts,
                     "alerts": len(fired), "alert_windows": fired})
    rows.sort(key=lambda r: (-r["mentions"], r["entity"]))
    return rows


def format_table(rows: list[dict], limit: int = 30) -> str:
    """The rows as a fixed-width text table (the first `limit`; alert details under it)."""
    width = max([len("entity")] + [len(r["entity"]) for r in rows[:limit]])
    head = f"{'entity':<{width}}  {'mentions':>8}  {'positive':>8}  {'neutral':>8}  {'negative':>8}  {'alerts':>6}"
    lines = [head, "-" * len(head)]
    for r in rows[:limit]:
        lines.append(f"{r['entity']:<{width}}  {r['mentions']:>8}  {r['positive']:>8}  {r['neutral']:>8}  "
                     f"{r['negative']:>8}  {r['alerts']:>6}")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more entities")
    for r in rows:
        for w in r["alert_windows"]:
            lines.append(f"alert: {r['entity']}: {w}")
    return "\n".join(lines)

"""When a stage pool grows or shrinks: the decision logic alone, without Ray or Kafka.

Each supervise tick the driver hands `Autoscaler.decide` what it measured per stage (the running
integral of in-flight batch slots, the batches running and waiting for the stage across the ingest
actors) and the consumer lag of the input; the autoscaler keeps windows over those readings and
returns at most one `Decision` per tick:

- **up** when, over the grow window (`pool_grow_after_s`), the work per actor (batches running or
  waiting for the stage, divided by its actors) averaged at least `pool_grow_backlog_per_actor`
  (reason `backlog`), or the consumer lag grew faster than `pool_grow_lag_rate` posts/s while it was
  at least `pool_grow_lag_min` and this stage had the most work per actor, at least one batch each
  (reason `lag_trend`: the stage is the bottleneck the lag builds up behind), or its in-flight slots
  were at least `pool_grow_occupancy` in use (reason `occupancy`);
- **down** when, over the shrink window (`pool_shrink_after_s`), its slots were at most
  `pool_shrink_occupancy` in use, the work per actor averaged at most `pool_shrink_backlog_per_actor`
  and the lag did not grow (reason `idle`);
- at once, whatever the windows and cooldowns, when an operator moved the bounds past the pool's
  size (reasons `min`, `max`).

After a change, and again at every tick until it took effect (the new actor joined, the removed one
ended: `settled`), a stage's windows start afresh (the new size is judged on its own readings) and no further
growth comes before `pool_up_cooldown_s`, no shrinking before `pool_down_cooldown_s`. A
stage whose new actor is still starting, or whose removed actor is still draining, is left alone
(`blocked`). The driver applies a decision (workers/driver/pools.py, `Pools`); scaling down drains the
actor before it ends, so no post is lost or doubled. Single-threaded: the driver's loop only.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import Field

from lrsa.settings import LrsaSettings, settings_slice


class AutoscaleSettings(LrsaSettings):
    """The thresholds of the pool autoscaler (a part of `lrsa run`'s settings)."""

    pool_grow_occupancy: float = Field(0.75, gt=0, le=1, description="a pool grows once its stage's in-flight "
                                       "slots were at least this share in use over --pool-grow-after-s")
    pool_grow_backlog_per_actor: float = Field(2.0, gt=0, description="... or once the batches running or waiting "
                                               "for the stage, per actor of its pool, averaged at least this "
                                               "over --pool-grow-after-s (more than 1: batches queue at the actors)")
    pool_grow_lag_rate: float = Field(0.0, ge=0, description="... or once the consumer lag grew faster than this "
                                      "(posts/s, least-squares slope over --pool-grow-after-s) while at least "
                                      "--pool-grow-lag-min, for the stage with the most work per actor")
    pool_grow_lag_min: int = Field(100, ge=0, description="consumer lag (posts) below which its trend grows no pool")
    pool_shrink_occupancy: float = Field(0.25, ge=0, lt=1, description="a pool shrinks once its slots were at "
                                         "most this share in use over --pool-shrink-after-s, ...")
    pool_shrink_backlog_per_actor: float = Field(0.5, ge=0, description="... the work per actor averaged at most "
                                                 "this, and the consumer lag did not grow")
    pool_up_cooldown_s: float = Field(5.0, ge=0, description="after a pool changed size, no growth before this")
    pool_down_cooldown_s: float = Field(30.0, ge=0, description="after a pool changed size, no shrinking before "
                                        "this (the removed actor drains its batches first)")


@dataclass(frozen=True)
class ScalingPolicy:
    grow_after_s: float = 5.0
    shrink_after_s: float = 60.0
    grow_occupancy: float = 0.75
    grow_backlog_per_actor: float = 2.0
    grow_lag_rate: float = 0.0
    grow_lag_min: int = 100
    shrink_occupancy: float = 0.25
    shrink_backlog_per_actor: float = 0.5
    up_cooldown_s: float = 5.0
    down_cooldown_s: float = 30.0

    @classmethod
    def from_settings(cls, s: Any) -> ScalingPolicy:
        """From WorkerSettings (its pool_* fields)."""
        return settings_slice(cls, s, "pool_")


@dataclass
class StageLoad:
    """One reading of a stage, summed over the ingest actors."""

    busy_slot_s: float = 0.0  # running integral: in-flight batches x seconds
    capacity: int = 0         # in-flight slots (max_inflight_batches x ingest actors)
    inflight: int = 0         # batches running in the stage now
    queued: int = 0           # batches waiting for the stage (for a slot, a retry, or to fill)


@dataclass
class Decision:
    stage: str
    direction: str  # "up" | "down"
    reason: str     # backlog | lag_trend | occupancy | idle | min | max
    size_from: int
    size_to: int
    detail: str
    at: float = field(default_factory=time.time)  # wall clock, for /status

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OccupancyWindow:
    """The average share of in-flight slots in use over the last `span_s`, from samples of a running
    integral (slot-seconds), so a sample caught between one batch and the next does not reset it."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, busy_slot_s: float, capacity: int) -> float | None:
        rate = self.add_rate(now, busy_slot_s)
        if rate is None or capacity <= 0:
            return None
        return min(1.0, max(0.0, rate / capacity))

    def add_rate(self, now: float, integral: float) -> float | None:
        """Add a sample of a running integral; its average rate over the window (None: one sample)."""
        self._samples.append((now, integral))
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.span_s:
            self._samples.popleft()  # keep the newest sample that is at least a span old
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return (v1 - v0) / (t1 - t0)

    def full(self) -> bool:
        """The samples span the whole window."""
        return len(self._samples) > 1 and self._samples[-1][0] - self._samples[0][0] >= self.span_s

    def clear(self) -> None:
        self._samples.clear()


class TrendWindow:
    """The least-squares slope (units per second) of a reading over the last `span_s`."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, value: float) -> None:
        self._samples.append((now, value))
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.span_s:
            self._samples.popleft()

    def full(self) -> bool:
        return len(self._samples) > 1 and self._samples[-1][0] - self._samples[0][0] >= self.span_s

    def slope(self) -> float | None:
        n = len(self._samples)
        if n < 2:
            return None
        mt = sum(t for t, _ in self._samples) / n
        mv = sum(v for _, v in self._samples) / n
        var = sum((t - mt) ** 2 for t, _ in self._samples)
        if var <= 0:
            return None
        return sum((t - mt) * (v - mv) for t, v in self._samples) / var

    def last(self) -> float | None:
        return self._samples[-1][1] if self._samples else None


class _StageWindows:
    def __init__(self, p: ScalingPolicy) -> None:
        self.grow_occ, self.shrink_occ = OccupancyWindow(p.grow_after_s), OccupancyWindow(p.shrink_after_s)
        self.grow_work, self.shrink_work = OccupancyWindow(p.grow_after_s), OccupancyWindow(p.shrink_after_s)
        self.work_s = 0.0          # running integral of work per actor (batches per actor x seconds)
        self.last: tuple[float, float] | None = None  # (time, work per actor) of the previous reading

    def clear(self) -> None:
        for w in (self.grow_occ, self.shrink_occ, self.grow_work, self.shrink_work):
            w.clear()


class Autoscaler:
    """Grow/shrink decisions for the stage pools; see the module docstring."""

    def __init__(self, policy: ScalingPolicy, bounds: dict[str, tuple[int, int]], history: int = 50) -> None:
        self.policy = policy
        self.bounds = {stage: (lo, hi) for stage, (lo, hi) in bounds.items()}
        self.decisions: deque[Decision] = deque(maxlen=history)
        self.readings: dict[str, dict[str, float]] = {}  # stage -> last window averages (for /status)
        self.lag_slope: float | None = None
        self._windows = {stage: _StageWindows(policy) for stage in bounds}
        self._grow_lag = TrendWindow(policy.grow_after_s)
        self._shrink_lag = TrendWindow(policy.shrink_after_s)
        self._changed_at: dict[str, float] = {}

    def set_bounds(self, stage: str, lo: int, hi: int) -> None:
        if stage not in self.bounds:
            raise KeyError(stage)
        if not 1 <= lo <= hi:
            raise ValueError(f"bounds of {stage} must satisfy 1 <= min <= max, got {lo}:{hi}")
        self.bounds[stage] = (lo, hi)

    def decide(self, now: float, sizes: dict[str, int], loads: dict[str, StageLoad], lag: float | None = None,
               blocked: set[str] | frozenset = frozenset()) -> Decision | None:
        """At most one decision for this tick. `sizes`: each pool's actors (a starting one counted);
        `blocked`: stages with an actor starting or draining (no decision for them now)."""
        p = self.policy
        if lag is not None:
            self._grow_lag.add(now, lag)
            self._shrink_lag.add(now, lag)
        grow_slope = self._grow_lag.slope() if self._grow_lag.full() else None
        shrink_slope = self._shrink_lag.slope() if self._shrink_lag.full() else None
        self.lag_slope = grow_slope
        averages: dict[str, dict[str, float | None]] = {}
        for stage in self.bounds:
            averages[stage] = self._read(stage, now, max(1, sizes.get(stage, 0)), loads.get(stage, StageLoad()))
        # The stage the lag builds up behind: the most work per actor (for the lag trend).
        bottleneck = max(averages, key=lambda s: averages[s]["grow_work"] or 0.0, default=None)
        for stage, (lo, hi) in self.bounds.items():
            size, a = sizes.get(stage, 0), averages[stage]
            if stage in blocked:  # a change under way: judged once it took effect
                self.settled(stage, now)
                continue
            if size < lo:
                return self._record(stage, "up", "min", size, size + 1, f"below its min {lo}", now)
            if size > hi:
                return self._record(stage, "down", "max", size, size - 1, f"above its max {hi}", now)
            since = now - self._changed_at.get(stage, float("-inf"))
            w = self._windows[stage]
            if size < hi and since >= p.up_cooldown_s and w.grow_occ.full():
                occ, work = a["grow_occ"], a["grow_work"]
                lag_now = self._grow_lag.last() or 0
                if work is not None and work >= p.grow_backlog_per_actor:
                    why = ("backlog", f"{work:.2f} batches per actor over {p.grow_after_s:g}s "
                                      f"(>= {p.grow_backlog_per_actor:g})")
                elif (grow_slope is not None and grow_slope > p.grow_lag_rate and lag_now >= p.grow_lag_min
                      and stage == bottleneck and (work or 0) >= 1.0):
                    why = ("lag_trend", f"consumer lag {lag_now:.0f} growing {grow_slope:.1f} posts/s over "
                                        f"{p.grow_after_s:g}s; {work:.2f} batches per actor")
                elif occ is not None and occ >= p.grow_occupancy:
                    why = ("occupancy", f"slots {100 * occ:.0f}% in use over {p.grow_after_s:g}s "
                                        f"(>= {100 * p.grow_occupancy:.0f}%)")
                else:
                    why = None
                if why:
                    return self._record(stage, "up", why[0], size, size + 1, why[1], now)
            if size > lo and since >= p.down_cooldown_s and w.shrink_occ.full():
                occ, work = a["shrink_occ"], a["shrink_work"]
                lag_grows = shrink_slope is not None and shrink_slope > p.grow_lag_rate and \
                    (self._shrink_lag.last() or 0) >= p.grow_lag_min
                if (occ is not None and occ <= p.shrink_occupancy and work is not None
                        and work <= p.shrink_backlog_per_actor and not lag_grows):
                    return self._record(stage, "down", "idle", size, size - 1,
                                        f"slots {100 * occ:.0f}% in use, {work:.2f} batches per actor over "
                                        f"{p.shrink_after_s:g}s", now)
        return None

    def _read(self, stage: str, now: float, actors: int, load: StageLoad) -> dict[str, float | None]:
        w = self._windows.setdefault(stage, _StageWindows(self.policy))
        if w.last is not None:
            w.work_s += w.last[1] * (now - w.last[0])
        w.last = (now, (load.inflight + load.queued) / actors)
        out = {"grow_occ": w.grow_occ.add(now, load.busy_slot_s, load.capacity),
               "shrink_occ": w.shrink_occ.add(now, load.busy_slot_s, load.capacity),
               "grow_work": w.grow_work.add_rate(now, w.work_s),
               "shrink_work": w.shrink_work.add_rate(now, w.work_s)}
        self.readings[stage] = {k: v for k, v in (("occupancy", out["grow_occ"]),
                                                  ("work_per_actor", out["grow_work"])) if v is not None}
        return out

    def _record(self, stage: str, direction: str, reason: str, size_from: int, size_to: int, detail: str,
                now: float) -> Decision:
        d = Decision(stage, direction, reason, size_from, size_to, detail)
        self.decisions.append(d)
        self._changed_at[stage] = now
        self._windows[stage].clear()  # judge the new size on its own readings
        return d

    def settled(self, stage: str, now: float) -> None:
        """A change took effect (a new actor joined, a removed one ended): the cooldowns run from
        here and the windows start afresh, so the new size is judged on its own readings."""
        if stage in self._windows:
            self._changed_at[stage] = now
            self._windows[stage].clear()

    def recent(self) -> list[dict[str, Any]]:
        return [d.as_dict() for d in self.decisions]

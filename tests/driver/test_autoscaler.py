"""The pool autoscaler's decisions, and the drain before a scaled-down actor ends: no Kafka, no Ray."""

from __future__ import annotations

import pytest

from workers.driver.autoscaler import Autoscaler, ScalingPolicy, StageLoad, TrendWindow
from workers.stages.pool import PoolClient

POLICY = ScalingPolicy(grow_after_s=5, shrink_after_s=10, grow_occupancy=0.75, grow_backlog_per_actor=2.0,
                       grow_lag_rate=0.0, grow_lag_min=100, shrink_occupancy=0.25, shrink_backlog_per_actor=0.5,
                       up_cooldown_s=8, down_cooldown_s=12)


class Sim:
    """A clock, per-stage slot integrals and pool sizes; `tick` feeds one second of readings."""

    def __init__(self, bounds: dict[str, tuple[int, int]], sizes: dict[str, int], policy: ScalingPolicy = POLICY):
        self.scaler = Autoscaler(policy, bounds)
        self.sizes = dict(sizes)
        self.t = 0.0
        self.busy = {s: 0.0 for s in bounds}
        self.log: list[tuple[float, str, str, str, int]] = []

    def tick(self, occupancy: dict[str, float], work: dict[str, float] | None = None, lag: float | None = None,
             capacity: int = 4, blocked: frozenset = frozenset()):
        loads = {}
        for stage in self.busy:
            loads[stage] = StageLoad(self.busy[stage], capacity,
                                     inflight=round(occupancy.get(stage, 0) * capacity),
                                     queued=round((work or {}).get(stage, 0) * self.sizes[stage]
                                                  - occupancy.get(stage, 0) * capacity))
        d = self.scaler.decide(self.t, self.sizes, loads, lag, blocked)
        if d:
            self.sizes[d.stage] = d.size_to
            self.log.append((self.t, d.stage, d.direction, d.reason, d.size_to))
        for stage in self.busy:
            self.busy[stage] += occupancy.get(stage, 0) * capacity
        self.t += 1.0
        return d


def test_a_backlog_per_actor_grows_the_pool_up_to_its_max_with_cooldowns() -> None:
    sim = Sim({"rationale": (1, 3)}, {"rationale": 1})
    for _ in range(40):  # slots half used (below the occupancy threshold), 3 batches per actor waiting/running
        sim.tick({"rationale": 0.5}, work={"rationale": 3.0})
    assert [(t, d, r, n) for t, _, d, r, n in sim.log] == [(5.0, "up", "backlog", 2), (13.0, "up", "backlog", 3)]
    assert sim.sizes["rationale"] == 3  # never above max
    assert sim.scaler.recent()[0]["reason"] == "backlog" and "batches per actor" in sim.scaler.recent()[0]["detail"]


def test_occupancy_alone_still_grows_and_an_idle_pool_shrinks_to_its_min() -> None:
    sim = Sim({"score": (1, 2)}, {"score": 1})
    for _ in range(10):
        sim.tick({"score": 0.9}, work={"score": 0.9})
    assert sim.log == [(5.0, "score", "up", "occupancy", 2)]
    for _ in range(40):
        sim.tick({"score": 0.05}, work={"score": 0.1})
    downs = [e for e in sim.log if e[2] == "down"]
    assert len(downs) == 1 and downs[0][3] == "idle" and sim.sizes["score"] == 1
    # after the down cooldown (12 s from the growth at 5), once the 10 s window averages <= 25 %:
    # at 18 it holds 8..18, 2 s at 90 % and 8 s at 5 %: (1.8 + 0.4) / 10 = 0.22
    assert downs[0][0] == 18.0 >= 5 + POLICY.down_cooldown_s


def test_a_growing_lag_grows_the_bottleneck_stage_only() -> None:
    sim = Sim({"rationale": (1, 4), "score": (1, 4)}, {"rationale": 1, "score": 1})
    lag = 0.0
    for _ in range(8):
        # neither stage over the occupancy or backlog thresholds, but the lag climbs 50 posts/s
        sim.tick({"rationale": 0.6, "score": 0.3}, work={"rationale": 1.5, "score": 0.3}, lag=200 + lag)
        lag += 50
    assert sim.log and sim.log[0][1:4] == ("rationale", "up", "lag_trend")
    assert all(stage == "rationale" for _, stage, *_ in sim.log)


def test_no_lag_trend_growth_below_the_minimum_lag_or_when_the_lag_falls() -> None:
    for lags in ([10 + 5 * i for i in range(10)], [5000 - 100 * i for i in range(10)]):
        sim = Sim({"rationale": (1, 4)}, {"rationale": 1})
        for lag in lags:
            sim.tick({"rationale": 0.6}, work={"rationale": 1.5}, lag=lag)
        assert sim.log == []


def test_an_idle_pool_does_not_shrink_while_the_lag_grows() -> None:
    sim = Sim({"rationale": (1, 2)}, {"rationale": 2})
    for i in range(30):
        sim.tick({"rationale": 0.1}, work={"rationale": 0.1}, lag=1000 + 20 * i)
    assert sim.log == []
    for i in range(30):
        sim.tick({"rationale": 0.1}, work={"rationale": 0.1}, lag=1000)
    assert [e[2:4] for e in sim.log] == [("down", "idle")]


def test_operator_bounds_apply_at_once_and_are_validated() -> None:
    sim = Sim({"rationale": (1, 4)}, {"rationale": 1})
    for _ in range(6):
        sim.tick({"rationale": 1.0}, work={"rationale": 3.0})
    assert sim.sizes["rationale"] == 2
    sim.scaler.set_bounds("rationale", 1, 1)  # within the cooldown, the pool still goes down to the new max
    sim.tick({"rationale": 1.0}, work={"rationale": 3.0})
    assert sim.log[-1][2:] == ("down", "max", 1)
    sim.scaler.set_bounds("rationale", 3, 3)  # and up to the new min, one actor per decision
    sim.tick({"rationale": 0.0})
    sim.tick({"rationale": 0.0})
    assert [e[2:] for e in sim.log[-2:]] == [("up", "min", 2), ("up", "min", 3)]
    for _ in range(30):  # idle, but at its min
        sim.tick({"rationale": 0.0})
    assert sim.sizes["rationale"] == 3
    with pytest.raises(ValueError):
        sim.scaler.set_bounds("rationale", 3, 2)
    with pytest.raises(ValueError):
        sim.scaler.set_bounds("rationale", 0, 2)
    with pytest.raises(KeyError):
        sim.scaler.set_bounds("nope", 1, 2)


def test_a_blocked_stage_gets_no_decision() -> None:
    sim = Sim({"rationale": (1, 3)}, {"rationale": 1})
    for _ in range(20):
        sim.tick({"rationale": 1.0}, work={"rationale": 4.0}, blocked=frozenset({"rationale"}))
    assert sim.log == []


def test_cooldowns_run_from_when_a_slow_starting_actor_joined() -> None:
    sim = Sim({"rationale": (1, 2)}, {"rationale": 1})
    for _ in range(6):
        sim.tick({"rationale": 1.0}, work={"rationale": 3.0})
    assert sim.log == [(5.0, "rationale", "up", "backlog", 2)]
    for _ in range(14):  # the new actor takes 14 s to start; the backlog is gone by then
        sim.tick({"rationale": 0.0}, blocked=frozenset({"rationale"}))
    joined = sim.t - 1  # the last tick it was starting
    for _ in range(40):
        sim.tick({"rationale": 0.0})
    downs = [t for t, _, d, *_ in sim.log if d == "down"]
    # not right after it joined: the down cooldown (12 s) runs from there, not from the decision
    assert downs and downs[0] >= joined + POLICY.down_cooldown_s


def test_trend_is_a_least_squares_slope_over_the_window() -> None:
    w = TrendWindow(4.0)
    for t in range(10):
        w.add(float(t), 3.0 * t + (1 if t % 2 else -1))  # noisy line, slope 3
    assert w.full() and abs(w.slope() - 3.0) < 0.5 and w.last() == 28.0


class _Handle:
    def __init__(self, name: str) -> None:
        self.name, self.process = name, self

    def remote(self, items):
        return self.name


def test_an_actor_that_leaves_the_pool_is_retiring_until_its_batches_are_released() -> None:
    a, b = _Handle("a"), _Handle("b")
    pool = PoolClient("rationale", [a, b])
    ref_a, key_a = pool.submit([])
    ref_b, key_b = pool.submit([])
    assert {ref_a, ref_b} == {"a", "b"}
    pool.set_actors([a])  # b scaled down while it runs a batch
    assert pool.retiring_inflight() == 1
    assert {pool.submit([])[0] for _ in range(3)} == {"a"}  # no new batch goes to b
    pool.release(key_b)
    assert pool.retiring_inflight() == 0
    pool.release(key_a)  # a's serial survived the change: released against a, not b
    assert pool._load[key_a] == 3


def test_pools_end_a_scaled_down_actor_only_after_the_acks_and_its_last_batch(monkeypatch) -> None:
    import ray

    from workers.driver.pools import Draining, Pools

    killed, acked = [], {"done": False}
    monkeypatch.setattr(ray, "kill", lambda actor, no_restart=True: killed.append(actor))
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns=1, timeout=None:
                        ((list(refs), []) if acked["done"] else ([], list(refs))))
    pools = Pools.__new__(Pools)  # only the draining part: no actors are started
    pools.draining, pools.actors, pools.drain_timeout_s = {}, {"rationale": ["a"]}, 60.0
    pools.draining["rationale"] = Draining("b", since=0.0)
    pools.retiring("rationale", ["ack-1", "ack-2"])
    idle = [{"retiring_inflight": {"rationale": 0}}]
    busy = [{"retiring_inflight": {"rationale": 1}}, {"retiring_inflight": {"rationale": 0}}]
    pools.finish_draining(idle, now=1.0)   # acks not in: statuses may predate the new lists
    assert not killed
    acked["done"] = True
    pools.finish_draining(idle, now=2.0)   # acks in now; these statuses were asked before: wait a tick
    assert not killed
    pools.finish_draining(busy, now=3.0)   # one ingest actor still has a batch on it
    assert not killed
    pools.finish_draining(idle, now=4.0)
    assert killed == ["b"] and not pools.draining
    pools.draining["rationale"] = Draining("c", since=0.0)  # never confirmed: ended at the drain timeout
    pools.finish_draining(busy, now=59.0)
    assert killed == ["b"]
    pools.finish_draining(busy, now=60.0)
    assert killed == ["b", "c"]


def test_policy_and_shift_params_are_slices_of_their_settings():
    """ScalingPolicy is WorkerSettings' pool_* fields and ShiftParams AggregateSettings' alert_*
    (lrsa.settings.settings_slice): every field comes across, and a policy field without a
    setting fails at once, naming it."""
    import dataclasses

    from lrsa.settings import settings_slice
    from workers.aggregate.config import AggregateSettings
    from workers.config import WorkerSettings

    s = WorkerSettings(pool_grow_after_s=7.5, pool_down_cooldown_s=99.0, pool_grow_lag_min=123)
    policy = ScalingPolicy.from_settings(s)
    assert all(getattr(policy, f.name) == getattr(s, "pool_" + f.name) for f in dataclasses.fields(policy))
    assert (policy.grow_after_s, policy.down_cooldown_s, policy.grow_lag_min) == (7.5, 99.0, 123)
    a = AggregateSettings(alert_z_fire=4.5, alert_min_mentions=3, watchlist="Acme, Delta Air Lines")
    shift = a.shift_params()
    assert (shift.z_fire, shift.min_mentions, shift.watchlist) == (4.5, 3, ("Acme", "Delta Air Lines"))

    @dataclasses.dataclass
    class Extra:
        grow_after_s: float
        not_a_setting: int = 0
    with pytest.raises(AttributeError, match="pool_not_a_setting"):
        settings_slice(Extra, s, "pool_")

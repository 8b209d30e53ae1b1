"""Stage plumbing without Ray: processor loading, GPU requests, least-busy dispatch, settings."""

from __future__ import annotations

import argparse

from lrsa.settings import add_settings_flags, settings_from_args
from workers.config import WorkerSettings
from workers.stages.pool import PoolClient, actor_options, load_processor


def test_gpus_are_asked_only_when_configured() -> None:
    assert "num_gpus" not in actor_options(1.0, 0.0)
    assert actor_options(1.0, 0.5)["num_gpus"] == 0.5


def test_load_processor_by_dotted_path() -> None:
    from workers.ingest.offsets import OffsetTracker

    assert isinstance(load_processor("workers.ingest.offsets:OffsetTracker"), OffsetTracker)
    assert isinstance(load_processor("workers.ingest.offsets.OffsetTracker"), OffsetTracker)


class _Handle:
    """Stands in for a Ray actor handle: records which actor got each batch."""

    def __init__(self, name: str, log: list) -> None:
        self.process = self
        self.name, self.log = name, log

    def remote(self, items):
        self.log.append(self.name)
        return f"ref-{self.name}"


def test_batches_go_to_the_least_busy_actor_and_new_actors_join() -> None:
    log: list[str] = []
    pool = PoolClient("score", [_Handle("a", log), _Handle("b", log)])
    _, first = pool.submit([])
    _, second = pool.submit([])
    assert {first, second} == {0, 1}
    pool.release(first)
    pool.submit([])
    assert log[-1] == log[0]  # the one released is idle again
    pool.set_actors([*pool.actors, _Handle("c", log)])
    pool.submit([])
    assert log[-1] == "c"


def test_flags_override_env_override_defaults(monkeypatch) -> None:
    monkeypatch.setenv("LRSA_BATCH_SIZE", "7")
    monkeypatch.setenv("LRSA_GROUP_ID", "from-env")
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, WorkerSettings)
    s = settings_from_args(WorkerSettings, parser.parse_args(["--group-id", "from-flag", "--exactly-once"]))
    assert (s.group_id, s.batch_size, s.exactly_once, s.max_text_chars) == ("from-flag", 7, True, 10_000)
    assert [name for name, *_ in s.model_copy(update={"score_enabled": True}).stage_settings()] == ["score"]


def test_occupancy_is_averaged_over_the_window_not_sampled() -> None:
    from workers.driver.autoscaler import OccupancyWindow

    # A saturated stage as the driver sees it: 4 slots, in use 90 % of the time, but a new batch
    # lags its predecessor's end, so every other point sample would show a free slot.
    window, busy, t = OccupancyWindow(5.0), 0.0, 0.0
    shares = []
    while t < 7.0:
        shares.append(window.add(t, busy, capacity=4))
        busy += 4 * 0.5 * 0.9
        t += 0.5
    assert shares[0] is None and window.full()
    assert abs(shares[-1] - 0.9) < 1e-9
    window.clear()
    assert not window.full() and window.add(t, busy, 4) is None
    # Half the slots in use: below the 0.75 at which a pool grows.
    assert abs(window.add(t + 5, busy + 10.0, 4) - 0.5) < 1e-9


def test_the_window_forgets_load_older_than_its_span() -> None:
    from workers.driver.autoscaler import OccupancyWindow

    window = OccupancyWindow(5.0)
    window.add(0.0, 0.0, 2)
    window.add(5.0, 10.0, 2)    # 5 s fully in use
    for t in (6.0, 8.0, 10.0):  # then idle
        share = window.add(t, 10.0, 2)
    assert share == 0.0 and window.full()


def _fake_pools(monkeypatch, started: str):
    """Pools with actor creation replaced: actors are ints, a new one answers as `started` says."""
    import workers.driver.pools
    import workers.stages.pool
    from workers.stages.actor_start import Starting
    from workers.driver.pipeline import Pools

    made = iter(range(100))
    monkeypatch.setattr(workers.stages.pool, "new_actor", lambda *a, **k: next(made))
    monkeypatch.setattr(workers.stages.pool, "start_pool", lambda stage, path, size, *a, **k: [next(made) for _ in range(size)])
    monkeypatch.setattr(workers.driver.pools, "check_placeable", lambda *a, **k: None)
    monkeypatch.setattr(workers.driver.pools, "start_watch", lambda actor: Starting(actor, None, 0.0))
    monkeypatch.setattr(workers.driver.pools, "poll_starting",
                        lambda stage, st, timeout: (started, "" if started == "ready" else "not placed by Ray"))
    s = WorkerSettings(rationale_enabled=True, rationale_pool_min=1, rationale_pool_max=2,
                       pool_grow_after_s=5, pool_shrink_after_s=20, actor_start_timeout_s=30)
    pools = Pools(s)
    monkeypatch.setattr(pools._liveness, "dead", lambda actors: [])
    return pools


def test_a_new_actor_that_does_not_start_is_reported_and_the_pool_keeps_its_actors(monkeypatch) -> None:
    pools = _fake_pools(monkeypatch, started="failed")
    busy, t = 0.0, 0.0
    grows = []
    for _ in range(20):
        grows.append(pools.rescale({"rationale": busy}, capacity=4, now=t))
        pools.tend()
        busy, t = busy + 4 * 0.9, t + 1.0
    assert pools.actors["rationale"] == [0]  # the first actor, still working alone
    assert pools.unplaced["rationale"] == "not placed by Ray"
    assert pools.status()["rationale"] == {"actors": 1, "starting": False, "unplaced": "not placed by Ray"}
    assert grows.count("rationale") == 1  # no new attempt within actor_start_timeout_s
    delta = pools.metrics.drain()
    assert delta["counters"][("lrsa_stage_actor_failures_total", (("kind", "not_started"), ("stage", "rationale")))] == 1
    assert delta["gauges"][("lrsa_stage_actors_unplaced", (("stage", "rationale"),))] == 1


def test_pools_grow_when_busy_and_shrink_when_idle_within_bounds(monkeypatch) -> None:
    """The driver's scaling decisions, with actor creation replaced (the metrics test runs real actors)."""
    pools = _fake_pools(monkeypatch, started="ready")
    clock, busy, changes = [0.0], 0.0, []

    def run(seconds: int, in_use: float) -> None:
        nonlocal busy
        for _ in range(seconds):
            change = pools.rescale({"rationale": busy}, capacity=4, now=clock[0])
            pools.tend()  # a new actor that answered joins its pool
            changes.append((clock[0], change, len(pools.actors["rationale"])))
            clock[0] += 1.0
            busy += 4 * in_use

    run(30, 0.9)   # saturated: grows once after 5 s, then stays at max 2
    run(60, 0.1)   # idle: shrinks once after 20 s, then stays at min 1
    grown = [(t, n) for t, c, n in changes if c]
    # at 47 s the last 20 s held 3 s at 0.9 and 17 s at 0.1: (2.7 + 1.7) / 20 = 0.22 <= 0.25
    assert grown == [(5.0, 2), (47.0, 1)]
    assert max(n for *_, n in changes) == 2 and changes[-1][2] == 1

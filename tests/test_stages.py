"""Stage plumbing without Ray: processor loading, GPU requests, least-busy dispatch, settings."""

from __future__ import annotations

import argparse

from lrsa.settings import add_settings_flags, settings_from_args
from workers.config import WorkerSettings
from workers.stages import PoolClient, actor_options, load_processor


def test_gpus_are_asked_only_when_configured() -> None:
    assert "num_gpus" not in actor_options(1.0, 0.0)
    assert actor_options(1.0, 0.5)["num_gpus"] == 0.5


def test_load_processor_by_dotted_path() -> None:
    from workers.offsets import OffsetTracker

    assert isinstance(load_processor("workers.offsets:OffsetTracker"), OffsetTracker)
    assert isinstance(load_processor("workers.offsets.OffsetTracker"), OffsetTracker)


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
    from workers.pipeline import OccupancyWindow

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
    from workers.pipeline import OccupancyWindow

    window = OccupancyWindow(5.0)
    window.add(0.0, 0.0, 2)
    window.add(5.0, 10.0, 2)    # 5 s fully in use
    for t in (6.0, 8.0, 10.0):  # then idle
        share = window.add(t, 10.0, 2)
    assert share == 0.0 and window.full()

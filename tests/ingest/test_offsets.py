"""Offset tracking: a commit never passes an offset whose output is not yet acknowledged."""

from __future__ import annotations

import random

from workers.ingest.offsets import OffsetTracker, PartitionOffsets


def test_commit_waits_for_the_gap() -> None:
    p = PartitionOffsets()
    for off in range(10, 15):
        p.add(off)
    p.done(11)
    p.done(12)
    assert p.committable is None  # 10 is still in flight
    p.done(10)
    assert p.committable == 13
    p.done(14)
    assert p.committable == 13
    p.done(13)
    assert p.committable == 15 and p.pending == 0


def test_gaps_in_offsets_are_fine() -> None:
    # Compacted topics and transaction markers leave holes in the offsets actually consumed.
    p = PartitionOffsets()
    for off in (3, 7, 8):
        p.add(off)
    p.done(7)
    p.done(3)
    assert p.committable == 8


def test_random_completion_order_matches_contiguous_prefix() -> None:
    rng = random.Random(7)
    offsets = list(range(1000))
    p = PartitionOffsets()
    for off in offsets:
        p.add(off)
    done = set()
    for off in rng.sample(offsets, len(offsets)):
        p.done(off)
        done.add(off)
        prefix = 0
        while prefix in done:
            prefix += 1
        assert p.committable == (prefix if prefix else None)


def test_tracker_reports_each_advance_once_and_forgets_revoked() -> None:
    t = OffsetTracker()
    for off in range(5):
        t.add("a", off)
        t.add("b", off)
    t.done("a", 0)
    t.done("a", 1)
    assert t.to_commit() == {"a": 2}
    t.committed({"a": 2})
    assert t.to_commit() == {}
    t.revoke(["b"])
    t.done("b", 0)  # late ack of a revoked partition: ignored
    assert "b" not in t.to_commit()
    assert t.pending == 3


def test_restart_points_cover_what_is_not_committed() -> None:
    from workers.ingest.offsets import OffsetTracker

    t = OffsetTracker()
    for off in range(10, 20):
        t.add("a", off)
        t.add("b", off)
        t.add("c", off)
    for off in range(10, 20):
        t.done("a", off)          # a: all done and committed
        t.done("c", off)          # c: all done, not committed (an aborted transaction)
    for off in range(10, 14):
        t.done("b", off)          # b: 10-13 done and committed, 14-19 in flight
    t.committed({"a": 20, "b": 14})
    assert t.restart_points(["a", "b", "c", "unknown"]) == {"b": 14, "c": 10}

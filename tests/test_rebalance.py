"""A member joining the group takes partitions from a running ingest worker: the worker hands
them over (finishes and commits its work) inside kafka-python 3's rebalance listener, so the
new member starts where the worker stopped. Runs the ingest loop in a thread, without Ray (no
stages: posts pass straight through)."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaConsumer

from streaming_helpers import committed_offsets, make_dataset, produce, read_all, wait_for
from workers.config import WorkerSettings
from workers.ingest import IngestWorker


@pytest.mark.kafka
@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_joining_member_starts_where_the_worker_handed_over(kafka_bootstrap, kafka_topic, exactly_once) -> None:
    data = make_dataset(300, 20, seed=11)
    topics = {"in": kafka_topic("rb-in", 2), "out": kafka_topic("rb-out", 1), "dlq": kafka_topic("rb-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    group = f"rebalance-{time.monotonic_ns()}"
    # No periodic commit in the test's time: only the hand-over can commit.
    settings = WorkerSettings(bootstrap_servers=kafka_bootstrap, input_topic=topics["in"], output_topic=topics["out"],
                              dlq_topic=topics["dlq"], group_id=group, commit_interval_ms=3_600_000,
                              session_timeout_ms=6000, exactly_once=exactly_once)
    worker = IngestWorker(settings, index=0)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    joiner = None
    try:
        wait_for(lambda: worker.consumed == len(data.values), 60, what="the worker to consume every post")
        assert committed_offsets(kafka_bootstrap, group, topics["in"]).get(0, -1) in (-1, None)

        joiner = KafkaConsumer(topics["in"], bootstrap_servers=kafka_bootstrap, group_id=group,
                               isolation_level="read_committed" if exactly_once else "read_uncommitted",
                               enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=6000)
        redelivered = []
        deadline = time.monotonic() + 60
        while not joiner.assignment() and time.monotonic() < deadline:
            for recs in joiner.poll(timeout_ms=200).values():
                redelivered.extend(recs)
        assert joiner.assignment(), "the joining member got no partition"
        for _ in range(5):  # anything left uncommitted would come now
            for recs in joiner.poll(timeout_ms=200).values():
                redelivered.extend(recs)
    finally:
        worker.stop()
        thread.join(60)
        if joiner is not None:
            joiner.close()
    assert not thread.is_alive()
    committed = committed_offsets(kafka_bootstrap, group, topics["in"])
    assert sum(committed.values()) == len(data.values), committed
    assert redelivered == []
    outputs = read_all(kafka_bootstrap, topics["out"], exactly_once) + read_all(kafka_bootstrap, topics["dlq"], exactly_once)
    assert len(outputs) == len(data.values)

"""Exactly-once mode: kill -9 mid-run, restart; a read_committed consumer sees every post once."""

from __future__ import annotations

import os
import signal

import pytest

from streaming_helpers import read_all
from test_crash_recovery import duplicates, run_interrupted

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def test_kill_9_in_exactly_once_mode_has_no_duplicates(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    data, results, letters, committed = run_interrupted(kafka_bootstrap, kafka_topic, tmp_path, "eos",
                                                        signal.SIGKILL, "--exactly-once", read_committed=True)
    raw = read_all(kafka_bootstrap, results[0].topic)  # read_uncommitted: aborted writes show up here
    print(f"\nexactly-once: kill -9 at {sum(committed.values())} committed; read_committed sees "
          f"{len(results)} results + {len(letters)} dead letters; read_uncommitted sees {len(raw)} results "
          f"({len(duplicates(raw))} duplicates from the aborted transaction)")
    assert duplicates(results) == [] and duplicates(letters) == []
    assert len(results) == len(data.good_ids) and len(letters) == len(data.bad_keys)


def test_a_hand_over_with_broker_acks_still_out_aborts_its_transaction(kafka_bootstrap, kafka_topic) -> None:
    """Issue 31 item 2, the path a coordinator-kill run hit once (1,000 duplicates read_committed):
    an exactly-once hand-over whose drain finished but whose commit was deferred, because the
    broker's acks for the open transaction's outputs were still out. The next owner reads those
    posts again from the committed offsets, so the held transaction must never commit beside them:
    `_hand_over` aborts it. Deterministic: the outputs are held in the real producer (a long
    linger) and its flush times out, as when a broker has just died; then the next owner redoes
    the posts, and the first member's next commit interval comes (where the held transaction used
    to commit a second copy)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaTimeoutError
    from kafka.structs import OffsetAndMetadata

    from workers.config import WorkerSettings
    from workers.ingest.actor import IngestWorker
    from workers.kafka_clients import clients as kafka_io

    n, tag = 25, os.urandom(3).hex()
    topics = {"in": kafka_topic("ho-in"), "out": kafka_topic("ho-out"), "dlq": kafka_topic("ho-dlq")}
    settings = WorkerSettings(bootstrap_servers=kafka_bootstrap, input_topic=topics["in"], output_topic=topics["out"],
                              dlq_topic=topics["dlq"], group_id=f"ho-{tag}", exactly_once=True)
    tp = TopicPartition(topics["in"], 0)
    worker = IngestWorker(settings, index=0)
    producer = kafka_io.producer(settings, transactional_id=f"ho-{tag}-0", linger_ms=600_000,  # held in the client
                                 delivery_timeout_ms=700_000)
    producer.init_transactions()
    worker.committer.open(producer)
    worker.consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=settings.group_id,
                                    enable_auto_commit=False)
    worker.consumer.assign([tp])
    real_flush = producer.flush

    def flush_times_out(timeout=None):
        raise KafkaTimeoutError("acks still out (a broker just died)")

    try:
        for offset in range(n):
            worker.tracker.add(tp, offset)
            worker.committer.send(topics["out"], f"p{offset}".encode(), b"{}", tp, offset)
        producer.flush = flush_times_out
        dropped = worker._hand_over(timeout_s=1.0)
        assert dropped == n and worker.left_uncommitted == n
        assert not worker.committer.in_txn and worker.committer.unacked == []

        # the next owner reads the posts again from the committed offsets (none) and commits them
        nxt = kafka_io.producer(settings, transactional_id=f"ho-{tag}-1")
        nxt.init_transactions()
        nxt.begin_transaction()
        for offset in range(n):
            nxt.send(topics["out"], key=f"p{offset}".encode(), value=b"{}")
        nxt.send_offsets_to_transaction({tp: OffsetAndMetadata(n, "", -1)}, worker.consumer.group_metadata())
        nxt.commit_transaction()
        nxt.close()

        producer.flush = real_flush  # the broker is back: the first member's next commit interval
        worker._commit()
    finally:
        producer.flush = real_flush
        producer.close(timeout=5)
        worker.consumer.close(autocommit=False)
    keys = [r.key for r in read_all(kafka_bootstrap, topics["out"], read_committed=True)]
    assert sorted(keys) == sorted(f"p{o}".encode() for o in range(n)), (
        f"read_committed: {len(keys)} results for {n} posts ({len(keys) - len(set(keys))} duplicates)")

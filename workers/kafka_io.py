"""Kafka clients configured the one way the worker, the benchmark and the tests need them."""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from workers.config import KafkaClientSettings


def consumer(settings: KafkaClientSettings, *topics: str, group_id: str | None,
             read_committed: bool = False, **extra: Any) -> KafkaConsumer:
    """A raw-bytes consumer with manual commits, able to fetch the largest allowed message."""
    return KafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers.split(","),
        group_id=group_id,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.max_message_bytes,
        fetch_max_bytes=max(settings.max_message_bytes, 50 * 1024 * 1024),
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        metadata_max_age_ms=settings.metadata_max_age_ms,
        **extra,
    )


def producer(settings: KafkaClientSettings, transactional_id: str | None = None, **extra: Any) -> KafkaProducer:
    """acks=all, small linger for batching; transactional when given an id.

    kafka-python 3 has no buffer_memory bound: callers bound their unacknowledged sends themselves."""
    config: dict[str, Any] = dict(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=settings.max_message_bytes,
        retries=10,
    )
    if transactional_id:
        config.update(transactional_id=transactional_id, enable_idempotence=True)
    config.update(extra)
    return KafkaProducer(**config)


class GroupLag:
    """Committed offsets of a group against the log end of its input topic, seen from outside
    the group (so a member that has no partitions yet cannot mistake that for 'drained')."""

    def __init__(self, settings: KafkaClientSettings, topic: str, group_id: str) -> None:
        from kafka import KafkaAdminClient

        self.topic, self.group_id = topic, group_id
        self._admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers.split(","))
        self._consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers.split(","), group_id=None)

    def lag(self) -> dict[int, int]:
        """partition -> end offset minus committed offset (the whole partition when nothing is committed)."""
        from kafka import TopicPartition

        parts = [TopicPartition(self.topic, p) for p in self._consumer.partitions_for_topic(self.topic) or ()]
        ends = self._consumer.end_offsets(parts)
        committed = self._admin.list_group_offsets(self.group_id).get(self.group_id, {})
        start = self._consumer.beginning_offsets(parts)
        return {tp.partition: max(0, end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                                            else start[tp]))
                for tp, end in ends.items()}

    def close(self) -> None:
        self._admin.close()
        self._consumer.close()

"""The dashboard's Kafka reader: one consumer thread, no consumer group (the page's state is its own).

The aggregates (compacted) and alerts topics are read from their start, so the page rebuilds its
history on start; the results topic from `results_backfill` records before its end per partition.
Topics that do not exist yet, and partitions added later, are picked up every
`metadata_interval_s`. Records are read `read_committed` (the aggregator writes transactionally).
A broker that cannot be reached is retried with back-off and reported to the page, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from dashboard.settings import DashboardSettings
from lrsa.backoff import Backoff

log = logging.getLogger(__name__)
RECONNECT = Backoff(initial_s=0.5, max_s=10.0, jitter=0)  # 0.5, 1, 2, ... 10 s between tries

Sink = Callable[[str, bytes | None, bytes | None], None]  # (kind, key, value)
Status = Callable[[dict], None]


class KafkaFeed:
    def __init__(self, settings: DashboardSettings, sink: Sink, status: Status) -> None:
        self.s, self.sink, self.status = settings, sink, status
        self.kinds = {settings.aggregates_topic: "aggregate", settings.alerts_topic: "alert"}
        if settings.results_topic:
            self.kinds[settings.results_topic] = "post"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-kafka", daemon=True)
        self.assigned: set[TopicPartition] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                consumer = KafkaConsumer(
                    bootstrap_servers=self.s.bootstrap_servers, group_id=None, enable_auto_commit=False,
                    isolation_level="read_committed", max_partition_fetch_bytes=self.s.max_message_bytes,
                    fetch_max_bytes=max(self.s.max_message_bytes, 52_428_800), request_timeout_ms=15_000,
                    metadata_max_age_ms=int(self.s.metadata_interval_s * 1000), **self.s.client_options())
            except Exception as e:  # noqa: BLE001 - e.g. NoBrokersAvailable: report, retry
                self.status({"type": "status", "kafka": f"unreachable: {type(e).__name__}: {e}"[:300]})
                self._stop.wait(RECONNECT.delay(failures))
                failures += 1
                continue
            failures = 0
            self.assigned = set()
            try:
                self._consume(consumer)
            except Exception as e:  # noqa: BLE001 - a broken connection: start over (state is idempotent)
                log.warning("dashboard Kafka reader failed (%s); reconnecting", e)
                self.status({"type": "status", "kafka": f"reconnecting: {type(e).__name__}"[:300]})
                self._stop.wait(RECONNECT.delay(0))
            finally:
                consumer.close(autocommit=False)

    def _consume(self, consumer: KafkaConsumer) -> None:
        next_look = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_look:
                self._assign(consumer)
                next_look = time.monotonic() + self.s.metadata_interval_s
            if not self.assigned:
                self._stop.wait(min(0.5, self.s.metadata_interval_s))
                continue
            for tp, records in consumer.poll(timeout_ms=300, max_records=2000).items():
                kind = self.kinds.get(tp.topic)
                for r in records:
                    self.sink(kind, r.key, r.value)

    def _assign(self, consumer: KafkaConsumer) -> None:
        """Assign every partition of the wanted topics; new ones start where their kind starts."""
        existing = consumer.topics()  # refreshes metadata (bounded by request_timeout_ms)
        wanted = {TopicPartition(t, p) for t in self.kinds if t in existing
                  for p in (consumer.partitions_for_topic(t) or ())}
        new = wanted - self.assigned
        if not new:
            if self.assigned:
                self.status({"type": "status", "kafka": "connected"})
            return
        consumer.assign(sorted(wanted))
        from_start = [tp for tp in new if self.kinds[tp.topic] != "post"]
        if from_start:
            consumer.seek_to_beginning(*from_start)
        posts = [tp for tp in new if self.kinds[tp.topic] == "post"]
        if posts:
            ends, starts = consumer.end_offsets(posts), consumer.beginning_offsets(posts)
            for tp in posts:
                consumer.seek(tp, max(starts[tp], ends[tp] - self.s.results_backfill))
        self.assigned = wanted
        self.status({"type": "status", "kafka": "connected",
                     "topics": sorted({tp.topic for tp in wanted})})

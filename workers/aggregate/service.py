"""`lrsa aggregate`: event-time tumbling windows per entity over the output topic, and shift
alerts, on Quix Streams (windowed reduce with RocksDB state + changelog topics, Kafka
transactions for exactly-once).

    results (keyed by post id) -> one mention per aspect -> group_by entity (repartition topic)
      -> per window size: tumbling window reduce, .current() -> lrsa.aggregates (compacted upserts)
      -> alert window: tumbling window reduce, .final() -> shift detector (state per entity)
                                                       -> lrsa.alerts

Event time: the result's `event_time` (contract v1.1), else the Kafka record timestamp. Windows
close per entity (Quix's "key" closing strategy): a window takes mentions until the entity's
latest event time passes its end by the allowed lateness; a later mention is counted
(lrsa_aggregate_late_mentions_total) and logged, never folded in silently.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from lrsa.aggregates import aggregate_record, event_time_ms, mentions_of, window_add, window_init
from lrsa.shift import on_closed_window
from workers.aggregate.config import AggregateSettings
from workers.kafka_clients.preflight import check_kafka

log = logging.getLogger("lrsa.aggregate")
INVALID = {"__invalid__": True}


def _safe_loads(data: bytes | bytearray) -> Any:
    """Bad input never stops the aggregator: unreadable records become INVALID (counted, skipped)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return INVALID


class AggregateMetrics:
    """The aggregator's Prometheus counters, in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter

        self.registry = CollectorRegistry()
        r = self.registry
        self.results = Counter("lrsa_aggregate_results", "result records consumed", registry=r)
        self.invalid = Counter("lrsa_aggregate_invalid_results", "records that are not a JSON result "
                               "object (skipped)", registry=r)
        self.mentions = Counter("lrsa_aggregate_mentions", "aspect mentions windowed", registry=r)
        self.late = Counter("lrsa_aggregate_late_mentions", "mentions later than the allowed lateness "
                            "(their window had closed): counted and logged, not aggregated",
                            ["window"], registry=r)
        self.updates = Counter("lrsa_aggregate_window_updates", "aggregate upserts sent", ["window"],
                               registry=r)
        self.alerts = Counter("lrsa_aggregate_alerts", "shift alert events sent", ["type", "direction"],
                              registry=r)
        for t in ("fired", "resolved"):
            for d in ("negative", "positive"):
                self.alerts.labels(type=t, direction=d)
        self.server = None

    def serve(self, host: str, port: int) -> int:
        from prometheus_client import start_http_server

        self.server, _ = start_http_server(port, addr=host, registry=self.registry)
        return self.server.server_port

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def ensure_output_topics(s: AggregateSettings) -> None:
    """The aggregates topic compacted (an upsert per key), the alerts topic plain; an existing
    aggregates topic that is not compacted is reported, not changed."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from workers.kafka_clients import clients as kafka_io

    admin = kafka_io.admin(s, request_timeout_ms=30_000)  # with the security settings
    try:
        existing = set(admin.list_topics())
        wanted = {s.aggregates_topic: {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                                       "segment.ms": "600000"},
                  s.alerts_topic: {}}
        missing = {n: c for n, c in wanted.items() if n not in existing}
        if missing:
            admin.create_topics({n: {"num_partitions": s.topic_partitions, "replication_factor": 1,
                                     "configs": c} for n, c in missing.items()}, wait_for_metadata=True)
        if s.aggregates_topic in existing:
            res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.aggregates_topic)])
            try:
                policy = res["topic"][s.aggregates_topic]["cleanup.policy"]["value"]
            except (KeyError, TypeError):  # another client version's shape: look for the word
                policy = "compact" if "compact" in str(res) else str(res)
            if "compact" not in policy:
                log.warning("topic %s exists and is not compacted: old window versions are kept",
                            s.aggregates_topic)
    finally:
        admin.close()


class Aggregator:
    """Builds the Quix Streams application; run() blocks until stopped (SIGTERM, idle, stop())."""

    def __init__(self, s: AggregateSettings, metrics: AggregateMetrics | None = None) -> None:
        from quixstreams import Application
        from quixstreams.models.serializers.json import JSONDeserializer

        from workers.kafka_clients.security import quix_broker_address

        self.s = s
        self.metrics = metrics or AggregateMetrics()
        producer_cfg: dict[str, Any] = {}
        if s.exactly_once:
            producer_cfg = {"transactional.id": f"{s.group_id}-{s.instance_id}",
                            "transaction.timeout.ms": s.transaction_timeout_ms}
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self.app = Application(
            broker_address=quix_broker_address(s, s.bootstrap_servers), consumer_group=s.group_id,
            auto_offset_reset=s.auto_offset_reset, commit_interval=s.commit_interval_s,
            state_dir=str(s.state_dir), processing_guarantee="exactly-once" if s.exactly_once else "at-least-once",
            producer_extra_config=producer_cfg, loglevel=None,
            consumer_extra_config={"topic.metadata.refresh.interval.ms": s.metadata_max_age_ms,
                                   "session.timeout.ms": s.session_timeout_ms,
                                   "fetch.wait.max.ms": s.fetch_wait_max_ms,
                                   "group.instance.id": f"{s.group_id}-{s.instance_id}"},
        )
        source = self.app.topic(s.input_topic, value_deserializer=JSONDeserializer(loads=_safe_loads),
                                timestamp_extractor=self._timestamp)
        aggregates = self.app.topic(s.aggregates_topic, key_serializer="string", value_serializer="json")
        alerts = self.app.topic(s.alerts_topic, key_serializer="string", value_serializer="json")

        sdf = self.app.dataframe(source)
        sdf = sdf.apply(self._mentions, expand=True)
        sdf = sdf.group_by(lambda m: m["entity"], name="entity")
        lateness_ms = int(s.allowed_lateness_s * 1000)
        for label, size_ms in s.window_sizes():
            w = (sdf.tumbling_window(size_ms, grace_ms=lateness_ms, name=f"agg-{label}",
                                     on_late=self._on_late(label))
                 .reduce(reducer=window_add, initializer=lambda m: window_add(window_init(), m))
                 .current())
            w = w.apply(self._record(label))
            w = w.set_timestamp(lambda value, key, ts, headers: int(time.time() * 1000))
            w.to_topic(aggregates, key=lambda v: f"{v['entity']}|{v['window']}|{v['window_start']}")
        label, size_ms = s.alert_window_size()
        params = s.shift_params()
        closed = (sdf.tumbling_window(size_ms, grace_ms=lateness_ms, name=f"alert-{label}",
                                      on_late=lambda *a, **k: False)  # counted once, by the agg window
                  .reduce(reducer=window_add, initializer=lambda m: window_add(window_init(), m))
                  .final())

        def detect(value: dict, state: Any) -> list[dict]:
            acc = value["value"]
            det, events = on_closed_window(state.get("detector"), acc["entity"], label, value["start"],
                                           acc["counts"], acc["evidence"], params, int(time.time() * 1000))
            state.set("detector", det)
            for e in events:
                self.metrics.alerts.labels(type=e["type"], direction=e["direction"]).inc()
                log.warning("shift alert %s: %s %s share %.2f vs baseline %.2f (z %.1f) in window %s",
                            e["type"], e["entity"], e["direction"], e["share"], e["baseline_share"], e["z"],
                            e["window_start"])
            return events

        closed = closed.apply(detect, stateful=True, expand=True)
        closed = closed.set_timestamp(lambda value, key, ts, headers: int(time.time() * 1000))
        closed.to_topic(alerts, key=lambda e: f"{e['entity']}|{e['direction']}")

    # -- steps -----------------------------------------------------------------------------
    @staticmethod
    def _timestamp(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
        return event_time_ms(value, int(timestamp))

    def _mentions(self, value: Any) -> list[dict]:
        if value is INVALID or not isinstance(value, dict) or value.get("__invalid__"):
            self.metrics.invalid.inc()
            return []
        self.metrics.results.inc()
        out = mentions_of(value)
        self.metrics.mentions.inc(len(out))
        return out

    def _on_late(self, label: str):
        def on_late(value: Any, key: Any, timestamp_ms: int, late_by_ms: int, start: int, end: int,
                    store_name: str, topic: str, partition: int, offset: int) -> bool:
            self.metrics.late.labels(window=label).inc()
            post = value.get("post_id") if isinstance(value, dict) else None
            log.warning("late mention (beyond the allowed lateness, not aggregated): entity=%s post=%s "
                        "window=%s start=%d late_by_ms=%d", key, post, label, start, late_by_ms)
            return False  # logged here
        return on_late

    def _record(self, label: str):
        def record(value: dict) -> dict:
            self.metrics.updates.labels(window=label).inc()
            return aggregate_record(value["value"], label, value["start"], value["end"], int(time.time() * 1000))
        return record

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> None:
        """Blocks until SIGTERM/SIGINT or stop(); with exit_when_idle_s, also once no message came
        for that long after the partitions were assigned and the state recovered."""
        self.app.run(timeout=self.s.exit_when_idle_s or 0.0)

    def stop(self) -> None:
        self.app.stop()


def run_aggregate(s: AggregateSettings, metrics: AggregateMetrics | None = None) -> int:
    if check_kafka(s, [s.input_topic]):  # a wrong address: one line, exit 2, before anything starts
        log.warning("input topic %s does not exist on %s yet: the aggregator waits for it (the worker's "
                    "--output-topic; `lrsa run` creates it with its first result on brokers that auto-create "
                    "topics)", s.input_topic, s.bootstrap_servers)
    ensure_output_topics(s)
    metrics = metrics or AggregateMetrics()
    if s.metrics_port is not None:
        port = metrics.serve(s.metrics_host, s.metrics_port)
        print(f"metrics on http://{s.metrics_host}:{port}/metrics", flush=True)
    try:
        Aggregator(s, metrics).run()
    finally:
        metrics.close()
    return 0

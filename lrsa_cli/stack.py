"""The embedded local stack of `lrsa demo` and `lrsa bench live-quality`: Apache Kafka (KRaft,
loopback, a free port) and a real tritonserver serving a fused-SLM checkpoint, started together
and stopped together; plus reading a topic back whole."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrsa.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)


@dataclass
class LocalStack:
    bootstrap: str
    triton: Any  # serving.triton_server.TritonServer
    checkpoint: Path

    @property
    def scorer_env(self) -> dict[str, str]:
        """What the score stage's actors need to reach this tritonserver (LRSA_SCORER_*)."""
        return {"LRSA_SCORER_URL": self.triton.grpc_url,
                "LRSA_SCORER_CHECKPOINT": str(self.checkpoint)}


@contextlib.contextmanager
def local_stack(workdir: Path, checkpoint: Path, *, triton_threads: int | None = None,
                triton_ready_s: float = 300.0, say=print) -> Iterator[LocalStack]:
    """Kafka then tritonserver (serving `checkpoint`), under `workdir`; both stopped on exit."""
    from lrsa.model_pack import resolve_checkpoint
    from serving.triton_server import TritonServer, render_repository
    from workers.devstack.kafka_stack import KafkaStack

    checkpoint = resolve_checkpoint(checkpoint)  # before starting anything: a bad path fails at once
    kafka = KafkaStack(workdir / "kafka", port=0)
    triton = TritonServer(render_repository(workdir / "repo", checkpoint, threads=triton_threads),
                          http_port=0, grpc_port=0, metrics_port=0, workdir=workdir / "triton")
    try:
        say("starting Apache Kafka (KRaft, loopback)")
        bootstrap = kafka.up()
        say("starting tritonserver with the fused SLM")
        triton.start(timeout_s=triton_ready_s)
        yield LocalStack(bootstrap, triton, Path(checkpoint))
    finally:
        triton.stop()
        kafka.down()


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0,
               security: KafkaSecurity | None = None) -> list[dict]:
    """Every record of `topic` up to its end offsets, as JSON; TimeoutError past the deadline.
    security: the LRSA_KAFKA_* settings (none: PLAINTEXT, as the embedded broker's listener)."""
    from kafka import KafkaConsumer, TopicPartition

    from workers.config import MAX_MESSAGE_BYTES

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                             **(security.client_options() if security else {}))
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions after {timeout_s:.0f}s")
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[dict] = []
        while any(consumer.position(tp) < end[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(out)} records of {topic} in {timeout_s:.0f}s, not all")
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(json.loads(r.value) for r in records)
        return out
    finally:
        consumer.close()

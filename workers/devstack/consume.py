"""`lrsa consume TOPIC`: read a topic as a person or a script would (results, dead letters,
aggregates, alerts). Pretty lines by default, one per record, shaped by what the record is;
`--json` prints each value as it is (one JSON per line). No consumer group: it commits nothing.
Ends after `--max` records, or once no record came for `--idle-s` (every wait has a deadline)."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from lrsa.stack_env import bootstrap_field
from workers.kafka_clients import clients as kafka_io
from workers.config import KafkaClientSettings
from workers.kafka_clients.preflight import check_kafka


class ConsumeSettings(KafkaClientSettings):
    """`lrsa consume` (env LRSA_CONSUME_<FIELD>; the Kafka address and security also from LRSA_KAFKA_*)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_CONSUME_")
    bootstrap_servers: str = bootstrap_field(validation_alias=AliasChoices(
        "bootstrap_servers", "LRSA_CONSUME_BOOTSTRAP_SERVERS", "LRSA_BOOTSTRAP_SERVERS"))

    from_beginning: bool = Field(False, description="start at the topic's first record (default: only new ones)")
    max: int | None = Field(None, ge=1, description="stop after this many records")
    idle_s: float = Field(5.0, gt=0, description="stop once no record has come for this long")
    json_lines: bool = Field(False, description="print each record's value as it is, one per line (for scripts)")


def records(s: ConsumeSettings, topic: str) -> Iterator[Any]:
    """The topic's records (kafka-python ConsumerRecord) in arrival order, per the settings' bounds."""
    from kafka import TopicPartition

    check_kafka(s, [topic], missing_is_error=True)
    consumer = kafka_io.consumer(s, group_id=None)
    try:
        deadline = time.monotonic() + s.kafka_connect_timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:  # the first metadata answer is on its way
            time.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic)
        parts = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(parts)
        if s.from_beginning:
            consumer.seek_to_beginning(*parts)
        else:
            consumer.seek_to_end(*parts)
        n, last = 0, time.monotonic()
        while time.monotonic() - last < s.idle_s:
            batch = consumer.poll(timeout_ms=200)
            for rec in (r for rs in batch.values() for r in rs):
                yield rec
                n += 1
                last = time.monotonic()
                if s.max is not None and n >= s.max:
                    return
    finally:
        consumer.close()


def describe(value: bytes | None) -> str:
    """One readable line for a record's value: a result, dead letter, aggregate or alert; anything
    else as its text."""
    if value is None:
        return "(tombstone)"
    try:
        v = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return value.decode("utf-8", "replace")
    if not isinstance(v, dict):
        return json.dumps(v)
    if "post_id" in v and "aspects" in v:  # a result
        aspects = ", ".join(f"{a.get('term')} {a.get('sentiment')} {a.get('confidence', 0):.2f}"
                            for a in v["aspects"] if isinstance(a, dict)) or ("no aspects" if v.get("scored", True)
                                                                              else "not scored")
        text = f"  \"{_short(v['text'])}\"" if v.get("text") else ""
        return f"{v['post_id']}: {aspects}{text}"
    if "error" in v and "original_b64" in v:  # a dead letter
        err = v["error"] if isinstance(v["error"], dict) else {}
        src = v.get("source") or {}
        original = _short(base64.b64decode(v["original_b64"]).decode("utf-8", "replace"))
        return (f"dead letter {err.get('reason')} ({_short(err.get('message', ''), 80)}) from {src.get('topic')}"
                f"/{src.get('partition')}@{src.get('offset')}: {original}")
    if "window_start" in v and "counts" in v:  # an aggregate
        c = v["counts"]
        return (f"{v.get('entity')} {v.get('window')} {v['window_start']}: {v.get('mentions')} mentions, "
                f"+{c.get('positive', 0)} ~{c.get('neutral', 0)} -{c.get('negative', 0)}, "
                f"net {v.get('net_sentiment', 0):+.2f}")
    if "direction" in v and "entity" in v and "share" in v:  # an alert
        return (f"alert {v.get('type')} {v['entity']}: {v['direction']} share {v['share']:.0%} in the "
                f"{v.get('window')} window from {v.get('window_start')} against {v.get('baseline_share', 0):.0%} "
                f"before ({len(v.get('post_ids') or [])} posts)")
    return _short(json.dumps(v), 300)


def _short(text: str, n: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def consume(s: ConsumeSettings, topic: str, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    n = 0
    for rec in records(s, topic):
        if s.json_lines:
            out.write((rec.value or b"null").decode("utf-8", "replace") + "\n")
        else:
            out.write(f"[{rec.partition}:{rec.offset}] {describe(rec.value)}\n")
        out.flush()
        n += 1
    print(f"{n} records from {topic}", file=sys.stderr)
    return 0

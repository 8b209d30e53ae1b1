"""`lrsa produce`: send posts from a JSONL file, each line as it is (malformed ones included, so
that they reach the worker and its dead-letter topic), keyed by post id when one can be read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from workers.kafka_clients import clients as kafka_io
from workers.config import KafkaClientSettings


def post_key(line: bytes) -> bytes | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    pid = data.get("id") if isinstance(data, dict) else None
    return str(pid).encode() if pid is not None else None


def read_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def send_lines(settings: KafkaClientSettings, topic: str, lines: Iterable[bytes], total: int | None = None,
               progress: bool = True) -> int:
    """Send every line, wait for the broker's acks; returns how many were sent."""
    from tqdm import tqdm

    producer = kafka_io.producer(settings)
    futures = []
    n = 0
    try:
        for line in tqdm(lines, total=total, unit="post", desc=f"-> {topic}", disable=not progress):
            futures.append(producer.send(topic, value=line, key=post_key(line)))
            n += 1
            if len(futures) >= 10_000:
                _check(producer, futures)
        _check(producer, futures)
    finally:
        producer.close()
    return n


def _check(producer, futures: list) -> None:
    producer.flush()
    for f in futures:
        f.get(timeout=0)  # raises what the broker refused
    futures.clear()

"""Helpers shared by the streaming tests: a mixed good/bad dataset, producing, reading back,
running `lrsa run` as a real separate process and killing it."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from PIL import Image

from workers.config import MAX_MESSAGE_BYTES

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
ECHO_STAGE = "stage_doubles:EchoProcessor"
SMALL_IMAGE_LIMIT = 4096  # the tests run the worker with this image limit to make "too large" cheap


def png_b64(size: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size))
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size * size)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


BAD_KINDS = ["invalid_json", "schema_violation", "empty_text", "text_too_long",
             "image_undecodable", "image_too_large", "tombstone"]


def bad_value(i: int, kind: str) -> bytes | None:
    pid = f"bad-{i}"
    return {
        "invalid_json": lambda: b'{"id": "' + pid.encode() + b'", "text": "unterminated',
        "schema_violation": lambda: json.dumps({"id": pid, "text": ["not", "a", "string"]}).encode(),
        "empty_text": lambda: json.dumps({"id": pid, "text": "   "}).encode(),
        "text_too_long": lambda: json.dumps({"id": pid, "text": "a" * 10_001}).encode(),
        "image_undecodable": lambda: json.dumps({"id": pid, "text": "pic", "image": {"b64": "@@not-base64@@"}}).encode(),
        "image_too_large": lambda: json.dumps({"id": pid, "text": "pic", "image": {"b64": BIG_IMAGE}}).encode(),
        "tombstone": lambda: None,
    }[kind]()


BIG_IMAGE = png_b64(48, seed=1)   # ~7 KB PNG: over SMALL_IMAGE_LIMIT
SMALL_IMAGE = png_b64(8, seed=2)


@dataclass
class Dataset:
    values: list[tuple[bytes | None, bytes | None]]  # (key, value)
    good_ids: set[str]
    bad_keys: set[str]


def make_dataset(n: int, n_bad: int, seed: int = 0) -> Dataset:
    """n messages, n_bad of them malformed in assorted ways, shuffled; every message has a unique key."""
    rng = random.Random(seed)
    bad_at = set(rng.sample(range(n), n_bad))
    values, good, bad = [], set(), set()
    for i in range(n):
        if i in bad_at:
            key = f"bad-{i}"
            values.append((key.encode(), bad_value(i, BAD_KINDS[i % len(BAD_KINDS)])))
            bad.add(key)
        else:
            pid = f"post-{i}"
            post = {"id": pid, "text": f"Post {i}: the new phone camera is great but battery is poor"}
            if i % 50 == 0:
                post["image"] = {"b64": SMALL_IMAGE}
            values.append((pid.encode(), json.dumps(post).encode()))
            good.add(pid)
    return Dataset(values, good, bad)


def produce(bootstrap: str, topic: str, values) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024,
                             max_request_size=MAX_MESSAGE_BYTES)
    futures = [producer.send(topic, key=k, value=v) for k, v in values]
    producer.flush()
    for f in futures:
        f.get(timeout=0)
    producer.close()


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    total = sum(consumer.end_offsets(parts).values())
    consumer.close()
    return total


def read_all(bootstrap: str, topic: str, read_committed: bool = False, timeout_s: float = 60) -> list:
    """Every record of the topic up to its end offsets (last stable offsets when read_committed)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap,
                             isolation_level="read_committed" if read_committed else "read_uncommitted",
                             max_partition_fetch_bytes=MAX_MESSAGE_BYTES)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    records, deadline = [], time.monotonic() + timeout_s
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout_s}s"
        for recs in consumer.poll(timeout_ms=500).values():
            records.extend(recs)
    consumer.close()
    return records


def committed_offsets(bootstrap: str, group: str, topic: str | None = None) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items() if topic in (None, tp.topic)}


def start_worker(bootstrap: str, topics: dict[str, str], group: str, *extra: str, log: Path,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lrsa_cli.main", "run", "--bootstrap-servers", bootstrap,
           "--input-topic", topics["in"], "--output-topic", topics["out"], "--dlq-topic", topics["dlq"],
           "--group-id", group, "--metrics-port", "0", "--ray-num-cpus", "4", "--session-timeout-ms", "8000",
           "--max-image-bytes", str(SMALL_IMAGE_LIMIT), *extra]
    full_env = {**os.environ, "PYTHONPATH": f"{TESTS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                "RAY_AUTH_MODE": "disabled", **(env or {})}
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    _started.append(proc)
    return proc


_started: list[subprocess.Popen] = []


def kill_started_workers() -> None:
    """A failed test leaves its worker (and its Ray) running: stop it before the next test."""
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            kill_tree(proc.pid)


def wait_exit(proc: subprocess.Popen, timeout_s: float, log: Path) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        raise AssertionError(f"worker did not finish in {timeout_s}s; log:\n{log.read_text()[-4000:]}")


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """kill -9 the worker and every process it started (Ray's GCS, raylet, actors)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=20)


def wait_for(predicate, timeout_s: float, every_s: float = 0.5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def ids_of(records) -> Counter:
    return Counter(r.key.decode() if r.key else None for r in records)


def read_outcome(bootstrap: str, topics: dict[str, str], data: Dataset,
                 read_committed: bool = False) -> tuple[list, list, int]:
    """(results, dead letters, duplicates) of a run, asserting that nothing was lost: every good
    post of `data` has a result and every bad one a dead letter."""
    results = read_all(bootstrap, topics["out"], read_committed=read_committed)
    letters = read_all(bootstrap, topics["dlq"], read_committed=read_committed)
    result_ids, letter_ids = ids_of(results), ids_of(letters)
    assert set(result_ids) == data.good_ids and set(letter_ids) == data.bad_keys  # nothing lost
    dups = sum(n - 1 for n in result_ids.values()) + sum(n - 1 for n in letter_ids.values())
    return results, letters, dups

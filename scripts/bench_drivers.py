"""Throughput of 1, 2 and 3 `lrsa run` drivers in one consumer group on this machine (issue 22).

    .venv/bin/python scripts/bench_drivers.py [--posts 6000] [--delay-s 0.001]

A throw-away embedded broker; for each driver count the same posts go to fresh topics (6
partitions), the drivers (each with its own local Ray, the echo rationale stage of tests/ sleeping
--delay-s per post, standing in for model work) consume them in one group and exit when idle.
Throughput = posts / (first to last output record timestamp): start-up is not counted. Every post
must reach the output exactly once. Prints one JSON object with posts/s and ratios to 1 driver.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

from workers.devstack.kafka_stack import KafkaStack, create_topics  # noqa: E402


def produce(bootstrap: str, topic: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for i in range(n):
        producer.send(topic, key=f"p{i}".encode(), value=json.dumps({"id": f"p{i}", "text": f"Post {i}: the "
                                                                     "camera is great but the battery is poor"}).encode())
    producer.flush()
    producer.close()


def read_out(bootstrap: str, topic: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends, records, deadline = consumer.end_offsets(parts), [], time.monotonic() + 120
    while any(consumer.position(tp) < e for tp, e in ends.items()) and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            records.extend(recs)
    consumer.close()
    return records


def run(bootstrap: str, drivers: int, posts: int, delay_s: float, workdir: Path) -> float:
    tag = f"d{drivers}-{os.urandom(2).hex()}"
    topics = {"in": f"{tag}-in", "out": f"{tag}-out", "dlq": f"{tag}-dlq"}
    create_topics(bootstrap, [topics["in"], topics["out"]], 6)
    create_topics(bootstrap, [topics["dlq"]], 1)
    produce(bootstrap, topics["in"], posts)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{REPO}", "RAY_AUTH_MODE": "disabled",
           "LRSA_TEST_STAGE_DELAY_S": str(delay_s)}
    cmd = [sys.executable, "-m", "lrsa_cli.main", "run", "--bootstrap-servers", bootstrap, "--input-topic",
           topics["in"], "--output-topic", topics["out"], "--dlq-topic", topics["dlq"], "--group-id", tag,
           "--metrics-port", "0", "--ray-num-cpus", "2", "--session-timeout-ms", "8000", "--exit-when-idle", "4",
           "--rationale-enabled", "--rationale-processor", "stage_doubles:EchoProcessor", "--batch-size", "50",
           "--no-score-enabled"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(workdir / f"{tag}-{i}.log", "wb"),
                              stderr=subprocess.STDOUT) for i in range(drivers)]
    for p in procs:
        if p.wait(timeout=600) != 0:
            raise SystemExit(f"a driver failed; see {workdir}")
    records = read_out(bootstrap, topics["out"])
    counts = Counter(r.key for r in records)
    assert len(counts) == posts and max(counts.values()) == 1, "not every post exactly once"
    stamps = sorted(r.timestamp for r in records)
    return posts / max(1e-3, (stamps[-1] - stamps[0]) / 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=6000)
    ap.add_argument("--delay-s", type=float, default=0.001)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-drivers-"))
    stack = KafkaStack(workdir / "kafka", port=0, heap="384m")
    stack.up()
    try:
        rates = {n: run(stack.bootstrap, n, args.posts, args.delay_s, workdir) for n in (1, 2, 3)}
    finally:
        stack.down()
    print(json.dumps({"posts": args.posts, "delay_s_per_post": args.delay_s, "cpus": os.cpu_count(),
                      "posts_per_s": {n: round(r, 1) for n, r in rates.items()},
                      "ratio_to_1": {n: round(r / rates[1], 2) for n, r in rates.items()}}))


if __name__ == "__main__":
    main()

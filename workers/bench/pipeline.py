"""`lrsa bench pipeline`: throughput of the pipeline against a bare kafka-python loop, in one run.

Both read the same N pre-loaded posts from their own topic of the same broker and write one
record per post, committing offsets after the broker acknowledged the writes (every 500 ms).
Throughput = N / (first record fetched -> last commit done): start-up is not counted.
With `--backlog N --measure-memory` it also runs `lrsa run` as a separate process and samples the
RSS of all its processes (driver, Ray's GCS/raylet, actors): idle, then while N posts drain.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from workers.config import WorkerSettings

log = logging.getLogger(__name__)

WORDS = ("love the new camera on this phone battery life is awful but the screen is gorgeous "
         "customer service at the store was slow coffee tastes great today concert was amazing").split()


class BenchSettings(WorkerSettings):
    posts: int = Field(20_000, ge=1, description="posts per throughput run")
    post_bytes: int = Field(1024, ge=64, description="approximate size of each post's JSON")
    partitions: int = Field(1, ge=1, description="partitions of the benchmark topics")
    embedded: bool = Field(True, description="start a throw-away embedded broker (off: use --bootstrap-servers)")
    backlog: int = Field(0, ge=0, description="with --measure-memory: posts in the backlog the worker drains")
    measure_memory: bool = Field(False, description="measure the worker's RSS (all processes) idle and draining")
    skip_throughput: bool = Field(False, description="only the memory measurement")


def make_post(i: int, size: int, rng: random.Random) -> bytes:
    words, length = [], 0
    while length < size - 60:
        words.append(rng.choice(WORDS))
        length += len(words[-1]) + 1
    return json.dumps({"id": f"bench-{i}", "text": " ".join(words), "lang": "en"}).encode()


def fill(s: BenchSettings, topic: str, n: int) -> None:
    from workers.devstack.produce import send_lines

    rng = random.Random(0)
    send_lines(s, topic, (make_post(i, s.post_bytes, rng) for i in range(n)), total=n)


def bare_loop(s: BenchSettings, in_topic: str, out_topic: str, n: int, out_bytes: int | None = None) -> float:
    """The floor: consume -> produce -> flush -> commit with kafka-python, nothing else.

    Forwards each value, or (out_bytes) a record of exactly out_bytes bytes made from it (cut or
    padded): the pipeline's results are not the posts' size, so like for like is a loop writing
    records of the results' measured size (`result_bytes`)."""
    from kafka.structs import OffsetAndMetadata

    from workers.kafka_clients import clients as kafka_io

    consumer = kafka_io.consumer(s, in_topic, group_id=f"bare-{in_topic}-{out_bytes}", auto_offset_reset="earliest",
                                 max_poll_records=s.poll_max_records)
    producer = kafka_io.producer(s)
    seen, first, last_commit, positions = 0, None, time.monotonic(), {}
    while seen < n:
        for tp, recs in consumer.poll(timeout_ms=100).items():
            first = first or time.perf_counter()
            for r in recs:
                producer.send(out_topic, value=r.value if out_bytes is None else r.value[:out_bytes].ljust(out_bytes),
                              key=r.key)
            positions[tp] = recs[-1].offset + 1
            seen += len(recs)
        if time.monotonic() - last_commit >= s.commit_interval_ms / 1000 or seen >= n:
            producer.flush()
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in positions.items()})
            last_commit = time.monotonic()
    elapsed = time.perf_counter() - first
    consumer.close(autocommit=False)
    producer.close()
    return n / elapsed


def pipeline_run(s: BenchSettings, in_topic: str, out_topic: str, dlq: str, n: int) -> float:
    from workers.driver.pipeline import Pipeline

    ws = WorkerSettings(**{**s.model_dump(include=set(WorkerSettings.model_fields)),
                           "input_topic": in_topic, "output_topic": out_topic, "dlq_topic": dlq,
                           "group_id": f"pipe-{in_topic}", "exit_when_idle": 2.0, "metrics_port": 0,
                           "rationale_enabled": False, "score_enabled": False})
    p = Pipeline(ws)
    assert p.run() == 0
    consumed = sum(st["consumed"] for st in p.final_statuses)
    assert consumed == n, f"pipeline consumed {consumed} of {n}"
    return posts_per_s(p.final_statuses)


def mean_record_bytes(s: BenchSettings, topic: str, sample: int = 1000) -> int:
    """The mean value size of the topic's first `sample` records (the pipeline's results)."""
    from kafka import TopicPartition

    from workers.kafka_clients import clients as kafka_io

    consumer = kafka_io.consumer(s, group_id=None, auto_offset_reset="earliest")
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        sizes: list[int] = []
        deadline = time.monotonic() + 60
        while len(sizes) < sample and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                sizes.extend(len(r.value) for r in recs)
    finally:
        consumer.close(autocommit=False)
    if not sizes:
        raise RuntimeError(f"no results on {topic} to measure")
    return round(sum(sizes[:sample]) / len(sizes[:sample]))


def posts_per_s(finals: list[dict[str, Any]]) -> float:
    """Posts consumed / (first record fetched -> last commit done), over the ingest actors'
    final statuses: start-up is not counted."""
    consumed = sum(st["consumed"] for st in finals)
    first = min(st["first_record_at"] for st in finals if st["first_record_at"])
    last = max(st["last_commit_at"] for st in finals if st["last_commit_at"])
    return consumed / (last - first)


def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.samples = pid, every_s, []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.samples.append((time.monotonic(), tree_rss(self.pid)))
            time.sleep(self.every_s)


def worker_process(s: BenchSettings, topic: str, out: str, dlq: str, group: str, idle_s: float,
                   log_dir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lrsa_cli.main", "run", "--bootstrap-servers", s.bootstrap_servers,
           "--input-topic", topic, "--output-topic", out, "--dlq-topic", dlq, "--group-id", group,
           "--exit-when-idle", str(idle_s), "--metrics-port", "0", "--control-port", "0",
           "--no-rationale-enabled", "--no-score-enabled"]  # the data path, as the throughput run
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log_dir / f"worker-{group}.log", "w"))


def _check_exit(code: int, phase: str, log_file: Path) -> None:
    """A worker that failed measured nothing (the bench once reported a worker that exited 2 at start)."""
    if code != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-5:] if log_file.exists() else []
        raise RuntimeError(f"the {phase} worker exited {code}; its log ends:\n" + "\n".join(tail))


def measure_memory(s: BenchSettings, topics: dict[str, str], log_dir: Path) -> dict[str, Any]:
    """Idle RSS of a worker on an empty topic, then its peak while a backlog of s.backlog drains."""
    group = f"mem-{topics['in']}"
    idle = worker_process(s, topics["in"], topics["out"], topics["dlq"], group, idle_s=8.0, log_dir=log_dir)
    sampler = RssSampler(idle.pid)
    sampler.start()
    _check_exit(idle.wait(timeout=300), "idle", log_dir / f"worker-{group}.log")
    sampler.stop_flag.set()
    settled = [rss for t, rss in sampler.samples if t >= sampler.samples[-1][0] - 4.0]  # last idle seconds
    idle_rss = max(settled)
    fill(s, topics["in"], s.backlog)
    start = time.monotonic()
    drain = worker_process(s, topics["in"], topics["out"], topics["dlq"], group, idle_s=3.0, log_dir=log_dir)
    sampler = RssSampler(drain.pid)
    sampler.start()
    code = drain.wait(timeout=1800)
    sampler.stop_flag.set()
    _check_exit(code, "draining", log_dir / f"worker-{group}.log")
    peak = max(rss for _, rss in sampler.samples)
    return {"backlog_posts": s.backlog, "idle_rss_mb": round(idle_rss / 2**20, 1),
            "peak_rss_mb_draining": round(peak / 2**20, 1), "peak_over_idle": round(peak / idle_rss, 2),
            "drain_s": round(time.monotonic() - start, 1), "worker_exit_code": code}


def run_bench(s: BenchSettings, as_json: bool = False) -> int:
    from workers.bench.run import bench_stack, print_figures
    from workers.devstack.kafka_stack import create_topics

    with bench_stack(s, "pipeline") as (s, work):  # broker data, worker logs
        tag = os.urandom(3).hex()
        names = {k: f"bench-{k}-{tag}" for k in ("bare-in", "bare-out", "pipe-in", "pipe-out", "dlq",
                                                  "mem-in", "mem-out")}
        create_topics(s.bootstrap_servers, list(names.values()), s.partitions, security=s)
        out: dict[str, Any] = {"posts": 0 if s.skip_throughput else s.posts, "post_bytes": s.post_bytes,
                               "partitions": s.partitions,
                               "ingest_actors": s.ingest_actors, "cpus": os.cpu_count()}
        if not s.skip_throughput:
            fill(s, names["bare-in"], s.posts)
            fill(s, names["pipe-in"], s.posts)
            out["bare_posts_per_s"] = round(bare_loop(s, names["bare-in"], names["bare-out"], s.posts), 1)
            out["pipeline_posts_per_s"] = round(pipeline_run(s, names["pipe-in"], names["pipe-out"],
                                                             names["dlq"], s.posts), 1)
            out["ratio"] = round(out["pipeline_posts_per_s"] / out["bare_posts_per_s"], 3)
            # Like for like: the same loop writing records of the pipeline's measured result size.
            out["result_bytes"] = mean_record_bytes(s, names["pipe-out"])
            out["bare_result_size_posts_per_s"] = round(bare_loop(s, names["bare-in"], names["bare-out"], s.posts,
                                                                  out_bytes=out["result_bytes"]), 1)
            out["ratio_vs_result_size"] = round(out["pipeline_posts_per_s"] / out["bare_result_size_posts_per_s"], 3)
        if s.measure_memory and s.backlog:
            out["memory"] = measure_memory(s, {"in": names["mem-in"], "out": names["mem-out"],
                                               "dlq": names["dlq"]}, work)
    print_figures(out, as_json)
    return 0

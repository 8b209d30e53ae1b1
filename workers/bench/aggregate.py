"""`lrsa bench aggregate`: the aggregator's throughput against a bare kafka-python loop reading the
same topic, and end-to-end freshness under load, in one run.

Throughput: N pre-loaded results (1-2 aspects each over `entities` entities), read once by a bare
loop (poll + json.loads, nothing else) and once by `lrsa aggregate` (fresh group, fresh state);
results/s = N / (first result seen -> last result processed), start-up not counted.

Freshness: a fresh aggregator runs while results with a wall-clock event time are produced at
`rate` results/s for `duration_s`; every 10th is a probe with an entity of its own. Freshness of
a probe = time from its send to the first aggregate of its entity seen by a read_committed
consumer of the aggregates topic (p50/p99 over the probes).
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from lrsa.aggregates import iso_ms, parse_time_ms
from workers.aggregate.config import AggregateSettings

log = logging.getLogger(__name__)
SENTIMENTS = ("positive", "neutral", "negative")


class AggregateBenchSettings(AggregateSettings):
    results: int = Field(20_000, ge=100, description="results per throughput run")
    entities: int = Field(50, ge=1, description="distinct entities in the benchmark results")
    partitions: int = Field(2, ge=1, description="partitions of the benchmark input topics")
    rate: float = Field(300.0, gt=0, description="results/s produced during the freshness run")
    duration_s: float = Field(20.0, gt=0, description="length of the freshness run")
    embedded: bool = Field(True, description="start a throw-away embedded broker (off: use --bootstrap-servers)")


def make_result(i: int, rng: random.Random, entities: int, t_ms: int, entity: str | None = None) -> dict:
    names = [entity] if entity else [f"Brand {rng.randrange(entities)}" for _ in range(rng.randint(1, 2))]
    return {"schema_version": "1.1", "post_id": f"b{i}", "event_time": iso_ms(t_ms), "scored": True,
            "rationale": "the battery is awful but the screen is gorgeous",
            "aspects": [{"term": n, "entity": n, "start": 0, "end": len(n), "sentiment": rng.choice(SENTIMENTS),
                         "confidence": round(rng.random(), 3)} for n in names]}


def fill(bootstrap: str, topic: str, n: int, entities: int, options: dict[str, Any] | None = None) -> None:
    from kafka import KafkaProducer

    rng = random.Random(0)
    base = int(time.time() * 1000) - n * 10
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024, **(options or {}))
    try:
        for i in range(n):
            r = make_result(i, rng, entities, base + i * 10)
            p.send(topic, key=r["post_id"].encode(), value=json.dumps(r).encode())
        p.flush(timeout=120)
    finally:
        p.close()


def bare_loop(bootstrap: str, topic: str, n: int, options: dict[str, Any] | None = None) -> float:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                      group_id=f"bench-bare-{os.urandom(3).hex()}", enable_auto_commit=False, **(options or {}))
    seen, first, deadline = 0, None, time.monotonic() + 300
    try:
        while seen < n and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                if first is None:
                    first = time.monotonic()
                for m in records:
                    json.loads(m.value)
                    seen += 1
        c.commit()
        last = time.monotonic()
    finally:
        c.close()
    if seen < n:
        raise RuntimeError(f"bare loop read {seen} of {n} results before its deadline")
    return n / (last - first)


def aggregator_run(s: AggregateSettings, n: int) -> float:
    from workers.aggregate.service import AggregateMetrics, Aggregator, ensure_output_topics

    ensure_output_topics(s)
    metrics = AggregateMetrics()
    agg = Aggregator(s, metrics)
    marks: dict[str, float] = {}

    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = metrics.results._value.get()
            if done and "first" not in marks:
                marks["first"] = time.monotonic()
            if done >= n:
                marks["last"] = time.monotonic()
                agg.stop()
                return
            time.sleep(0.02)
        agg.stop()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    agg.run()
    t.join(timeout=10)
    if "last" not in marks:
        raise RuntimeError("the aggregator did not process every result before its deadline")
    return n / (marks["last"] - marks["first"])


def freshness_run(s: AggregateSettings, rate: float, duration_s: float, entities: int) -> dict[str, Any]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from workers.aggregate.service import ensure_output_topics

    ensure_output_topics(s)
    # the aggregator as its own process, like in production: the load generator here must not
    # share its interpreter (and GIL)
    cmd = [sys.executable, "-m", "lrsa_cli.main", "aggregate", "--bootstrap-servers", s.bootstrap_servers,
           "--input-topic", s.input_topic, "--aggregates-topic", s.aggregates_topic,
           "--alerts-topic", s.alerts_topic, "--group-id", s.group_id, "--state-dir", str(s.state_dir),
           "--windows", s.windows, "--allowed-lateness-s", str(s.allowed_lateness_s),
           "--commit-interval-s", str(s.commit_interval_s),
           "--exactly-once" if s.exactly_once else "--no-exactly-once", "--metrics-port", "0",
           "--fetch-wait-max-ms", str(s.fetch_wait_max_ms)]
    log_path = Path(str(s.state_dir) + ".log")
    agg = subprocess.Popen(cmd, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    sent_wall: dict[str, float] = {}  # wall clock, against the aggregate's updated_at
    made: dict[str, float] = {}
    counter = {"sent": 0}

    def load() -> None:
        c = KafkaConsumer(bootstrap_servers=s.bootstrap_servers, isolation_level="read_committed",
                          enable_auto_commit=False, **s.client_options())
        try:
            parts = [TopicPartition(s.aggregates_topic, p) for p in c.partitions_for_topic(s.aggregates_topic)]
            c.assign(parts)
            c.seek_to_end()
            stop = threading.Event()

            def read() -> None:
                while not stop.is_set():
                    for records in c.poll(timeout_ms=200).values():
                        now = time.monotonic()
                        for m in records:
                            entity = m.key.decode().split("|")[0]
                            if entity.startswith(("probe-", "warmup")) and entity not in seen:
                                seen[entity] = now
                                made[entity] = parse_time_ms(json.loads(m.value)["updated_at"]) / 1000

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, linger_ms=5, **s.client_options())
            rng = random.Random(1)
            # the aggregator's start-up (topics, assignment, recovery) is not freshness: wait until
            # a warm-up result is visible before the timed load starts
            warm = make_result(-1, rng, entities, int(time.time() * 1000), entity="warmup")
            p.send(s.input_topic, key=b"warmup", value=json.dumps(warm).encode())
            p.flush(timeout=60)
            deadline = time.monotonic() + 180
            while "warmup" not in seen and time.monotonic() < deadline:
                time.sleep(0.1)
            start = time.monotonic()
            i = 0
            try:
                while time.monotonic() - start < duration_s:
                    due = start + i / rate
                    if due > time.monotonic():
                        time.sleep(due - time.monotonic())
                    probe = f"probe-{i}" if i % 10 == 0 else None
                    r = make_result(i, rng, entities, int(time.time() * 1000), entity=probe)
                    p.send(s.input_topic, key=r["post_id"].encode(), value=json.dumps(r).encode())
                    if probe:
                        sent[probe] = time.monotonic()
                        sent_wall[probe] = time.time()
                    i += 1
                p.flush(timeout=60)
                counter["sent"] = i
                deadline = time.monotonic() + 60
                while len(seen) < len(sent) and time.monotonic() < deadline:
                    time.sleep(0.2)
            finally:
                p.close()
                stop.set()
                reader.join(timeout=5)
        finally:
            c.close()

    try:
        load()
    finally:
        agg.terminate()
        try:
            agg.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agg.kill()
            agg.wait(timeout=10)
    if "warmup" not in seen:
        raise RuntimeError(f"the aggregator never made its first aggregate; log: {log_path.read_text()[-3000:]}")
    lat = sorted((seen[k] - sent[k]) * 1000 for k in sent if k in seen)
    made_lat = sorted((made[k] - sent_wall[k]) * 1000 for k in sent if k in made)

    def pct(xs: list[float], p: int) -> float | None:
        if not xs:
            return None
        return round(statistics.median(xs), 1) if p == 50 else round(
            (statistics.quantiles(xs, n=100)[p - 1] if len(xs) >= 2 else xs[0]), 1)

    return {"rate_results_per_s": round(counter["sent"] / duration_s, 1), "probes": len(sent),
            "probes_seen": len(lat),
            "freshness_p50_ms": pct(lat, 50), "freshness_p99_ms": pct(lat, 99),
            # of which: produced -> the aggregator made the update (its updated_at)
            "to_update_p50_ms": pct(made_lat, 50), "to_update_p99_ms": pct(made_lat, 99)}


def run_bench(s: AggregateBenchSettings, as_json: bool = False) -> int:
    from workers.bench.run import bench_stack, print_figures
    from workers.devstack.kafka_stack import create_topics

    with bench_stack(s, "aggregate") as (s, work):
        tag = os.urandom(3).hex()
        tin, fin = f"bench-agg-in-{tag}", f"bench-agg-live-{tag}"
        create_topics(s.bootstrap_servers, [tin, fin], s.partitions, security=s)
        fill(s.bootstrap_servers, tin, s.results, s.entities, s.client_options())
        common = {"allowed_lateness_s": max(s.allowed_lateness_s, 86400.0), "exit_when_idle_s": None,
                  "metrics_port": None}
        thr = s.model_copy(update={**common, "input_topic": tin, "group_id": f"bench-agg-{tag}",
                                   "aggregates_topic": f"bench-agg-out-{tag}", "alerts_topic": f"bench-alerts-{tag}",
                                   "state_dir": work / "state-throughput"})
        out: dict[str, Any] = {"results": s.results, "entities": s.entities, "partitions": s.partitions,
                               "windows": s.windows, "exactly_once": s.exactly_once,
                               "commit_interval_s": s.commit_interval_s, "cpus": os.cpu_count()}
        out["bare_results_per_s"] = round(bare_loop(s.bootstrap_servers, tin, s.results, s.client_options()), 1)
        out["aggregate_results_per_s"] = round(aggregator_run(thr, s.results), 1)
        out["ratio"] = round(out["aggregate_results_per_s"] / out["bare_results_per_s"], 3)
        live = s.model_copy(update={**common, "input_topic": fin, "group_id": f"bench-agg-live-{tag}",
                                    "allowed_lateness_s": s.allowed_lateness_s,
                                    "aggregates_topic": f"bench-agg-live-out-{tag}",
                                    "alerts_topic": f"bench-alerts-live-{tag}", "state_dir": work / "state-live"})
        out.update(freshness_run(live, s.rate, s.duration_s, s.entities))
    print_figures(out, as_json)
    return 0

"""`lrsa bench rebalance`: what group changes cost the stream, eager against cooperative-sticky.

For each mode, one run on a throw-away embedded broker (or --bootstrap-servers):

- A topic of `partitions` partitions gets a steady feed of posts (`rate` a second for
  `duration_s`).
- `members` ingest workers consume it. They run as one driver's ingest actors do, each its own
  consumer-group member with its own Kafka clients, but in threads of this process. Their stage is
  the slow stage (`stage_delay_ms` a post, in a local Ray pool), so a hand-over finds batches in
  flight.
- Every `every_s` seconds a member joins, and at the next change it leaves again (a graceful stop).
- Afterwards the output topic is read back.

Printed per mode:
- rebalances (the member changes made);
- the longest gap between two consecutive outputs in the `window_s` after each change: the max,
  and the mean over changes;
- evictions (members that lost their partitions without a hand-over: a `lost` callback or a
  rejoin after a timeout);
- duplicates (at-least-once: outputs of a post beyond its first), and lost posts (never output).

The ratio compares the cooperative mode's max gap to the eager one's. The stage is the slow stage
rather than Triton's score stage: the benchmark measures the group's hand-overs, and what they
cost grows with the work in flight, which `stage_delay_ms` sets.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from typing import Any

from pydantic import Field

from workers.bench.pipeline import BenchSettings, make_post
from workers.config import WorkerSettings

log = logging.getLogger(__name__)
MODES = ("eager", "cooperative-sticky")


class RebalanceBenchSettings(BenchSettings):
    members: int = Field(3, ge=1, description="ingest workers (group members) running throughout")
    partitions: int = Field(6, ge=2, description="partitions of the input topic")
    rate: float = Field(200.0, gt=0, description="posts written to the input topic per second")
    duration_s: float = Field(40.0, gt=0, description="how long the feed runs")
    every_s: float = Field(8.0, gt=0, description="seconds between member changes (a join, then a leave)")
    window_s: float = Field(8.0, gt=0, description="after each change, how long output gaps count towards it")
    stage_delay_ms: float = Field(5.0, ge=0, description="the slow stage's time per post (ms)")
    batch_size: int = Field(16, ge=1, description="posts per stage call")
    session_timeout_ms: int = Field(10_000, ge=6000, description="consumer group session timeout")


class _Member:
    """One ingest worker in a thread, counting its rebalance callbacks by kind."""

    def __init__(self, ws: WorkerSettings, index: int, pools: dict[str, list]) -> None:
        from workers.ingest.actor import IngestWorker

        self.worker = IngestWorker(ws, index=index, pools=pools)
        self.kinds: Counter = Counter()
        inner = self.worker.handle_rebalance

        async def record(request) -> None:
            if request.partitions:
                self.kinds[request.kind] += 1
            await inner(request)
        self.worker.handle_rebalance = record
        self.thread = threading.Thread(target=self.worker.run, daemon=True, name=f"member-{index}")
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(120)

    @property
    def evictions(self) -> int:
        return self.kinds["lost"] + self.worker.metrics.drain()["counters"].get(
            ("lrsa_rejoins_total", (("kind", "timeout"),)), 0)


def _feed(s: RebalanceBenchSettings, topic: str, total: int, stop: threading.Event) -> None:
    import random

    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers.split(","), linger_ms=5, **s.client_options())
    rng = random.Random(0)
    start, sent = time.monotonic(), 0
    while sent < total and not stop.is_set():
        due = min(total, int((time.monotonic() - start) * s.rate) + 1)
        for i in range(sent, due):
            producer.send(topic, key=f"bench-{i}".encode(), value=make_post(i, s.post_bytes, rng))
        sent = due
        producer.flush()
        time.sleep(0.05)
    producer.close()


def _outputs(s: RebalanceBenchSettings, topic: str) -> list[tuple[int, bytes]]:
    """(broker timestamp ms, key) of every output record."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers.split(","), **s.client_options())
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    out = []
    deadline = time.monotonic() + 120
    while any(consumer.position(tp) < end for tp, end in ends.items()) and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            out.extend((r.timestamp, r.key) for r in recs)
    consumer.close()
    return sorted(out)


def _longest_gap(times_ms: list[int], start_ms: int, end_ms: int) -> float:
    inside = [t for t in times_ms if start_ms <= t <= end_ms]
    points = [start_ms, *inside, end_ms] if inside else [start_ms, end_ms]
    return max(b - a for a, b in zip(points, points[1:])) / 1000


def run_mode(s: RebalanceBenchSettings, mode: str, tag: str) -> dict[str, Any]:
    from workers.devstack.kafka_stack import create_topics
    from workers.stages import settings as stage_settings
    from workers.stages.pool import start_pool

    topics = {k: f"rebalance-{k}-{mode}-{tag}" for k in ("in", "out", "dlq")}
    create_topics(s.bootstrap_servers, [topics["in"]], s.partitions, security=s)
    create_topics(s.bootstrap_servers, [topics["out"], topics["dlq"]], 1, security=s)
    ws = WorkerSettings(**{**s.model_dump(include=set(WorkerSettings.model_fields)),
                           "input_topic": topics["in"], "output_topic": topics["out"], "dlq_topic": topics["dlq"],
                           "group_id": f"rebalance-{mode}-{tag}", "partition_assignment": mode,
                           "rationale_enabled": True, "rationale_processor": "workers.bench.scaling:SlowStage",
                           "score_enabled": False, "exactly_once": False})
    pools = {"rationale": start_pool("rationale", ws.rationale_processor, 2, 0.25, 0.0,
                                     settings=stage_settings.build(ws.rationale_processor, ws))}
    total = int(s.rate * s.duration_s)
    members = [_Member(ws, i, pools) for i in range(s.members)]
    time.sleep(3)  # the group forms before the feed starts
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(s, topics["in"], total, stop), daemon=True)
    feeder.start()
    changes: list[int] = []
    extra: list[_Member] = []
    gone: list[_Member] = []  # members that joined and left again
    begin = time.monotonic()
    index = s.members
    try:
        while feeder.is_alive() and time.monotonic() - begin < s.duration_s + 30:
            time.sleep(s.every_s)
            if not feeder.is_alive():
                break
            changes.append(int(time.time() * 1000))
            if extra:
                gone.append(extra.pop())
                gone[-1].stop()
            else:
                extra.append(_Member(ws, index, pools))
                index += 1
        deadline = time.monotonic() + 120
        while sum(m.worker.consumed for m in members + extra + gone) < total and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)
    finally:
        stop.set()
        everyone = members + extra + gone
        for m in everyone:
            m.stop()
    evictions = sum(m.evictions for m in everyone)
    outs = _outputs(s, topics["out"])
    times = [t for t, _ in outs]
    keys = Counter(k for _, k in outs)
    # a window ends early at the last output: after it the feed is over and nothing is due
    gaps = [_longest_gap(times, c, min(c + int(s.window_s * 1000), times[-1])) for c in changes if times]
    return {"mode": mode, "rebalances": len(changes), "posts": total,
            "longest_gap_s_max": round(max(gaps), 2) if gaps else None,
            "longest_gap_s_mean": round(sum(gaps) / len(gaps), 2) if gaps else None,
            "gaps_s": [round(g, 2) for g in gaps], "evictions": evictions,
            "duplicates": sum(keys.values()) - len(keys), "lost": total - len(keys)}


def run_bench(s: RebalanceBenchSettings, as_json: bool = False) -> int:
    import ray

    from workers.bench.run import bench_stack, print_figures
    from workers.driver.pipeline import init_ray

    os.environ["LRSA_BENCH_STAGE_DELAY_S"] = str(s.stage_delay_ms / 1000)  # read by the slow stage's actors
    out: dict[str, Any] = {"members": s.members, "partitions": s.partitions, "rate": s.rate,
                           "duration_s": s.duration_s, "every_s": s.every_s, "stage_delay_ms": s.stage_delay_ms,
                           "rebalance_drain_s": s.rebalance_drain_s, "load_1m": round(os.getloadavg()[0], 2)}
    with bench_stack(s, "rebalance") as (s, _):
        init_ray(WorkerSettings(ray_num_cpus=s.ray_num_cpus, ray_address=s.ray_address))
        tag = os.urandom(3).hex()
        try:
            for mode in MODES:
                out[mode] = run_mode(s, mode, tag)
        finally:
            ray.shutdown()
    eager, coop = out["eager"]["longest_gap_s_max"], out["cooperative-sticky"]["longest_gap_s_max"]
    out["ratio_longest_gap_cooperative_over_eager"] = round(coop / eager, 3) if eager and coop is not None else None
    print_figures(out, as_json)
    return 0

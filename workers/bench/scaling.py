"""`lrsa bench scaling`: what a second actor of a slow stage buys, in one run.

The same N pre-loaded posts go through the worker (in process, a throw-away embedded broker)
twice, each time from a topic of its own, with a slow stage (`SlowStage`: sleeps
`--stage-delay-ms` per post, standing in for an LLM or a model server) as the rationale stage:
once with its pool fixed at 1 actor, once at 2. Throughput = posts / (first record fetched ->
last commit done), start-up not counted; the figure is the ratio 2-actor / 1-actor (2.0 at best).
Each run also checks that every post reached the output topic exactly once.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lrsa.settings import LrsaSettings
from workers.bench.pipeline import BenchSettings, fill, posts_per_s
from workers.config import WorkerSettings
from workers.stages.api import WorkItem

log = logging.getLogger(__name__)


class SlowStageSettings(LrsaSettings):
    """The benchmark's slow stage (env LRSA_BENCH_STAGE_<FIELD>, set by the benchmark itself)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_BENCH_STAGE_", extra="ignore")

    delay_s: float = Field(0.005, ge=0, description="seconds the stage sleeps per post")


class SlowStage:
    """A stage that takes `delay_s` per post and does nothing else (it releases the CPU meanwhile,
    as a stage waiting on a model server does)."""

    name = "rationale"
    settings_class = SlowStageSettings

    def __init__(self, settings: SlowStageSettings | None = None) -> None:
        self.delay_s = (settings or SlowStageSettings()).delay_s

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        time.sleep(self.delay_s * len(items))
        for item in items:
            item.rationale = "slow"
        return items

    def versions(self) -> dict[str, str]:
        return {"rationale": "bench-slow-stage"}

    def healthy(self) -> bool:
        return True


class ScalingBenchSettings(BenchSettings):
    posts: int = Field(2000, ge=1, description="posts per run")
    post_bytes: int = Field(256, ge=64, description="approximate size of each post's JSON")
    partitions: int = Field(2, ge=1, description="partitions of the benchmark topics")
    stage_delay_ms: float = Field(5.0, ge=0, description="the slow stage's time per post (ms)")
    batch_size: int = Field(16, ge=1, description="posts per stage call (max batch size)")


def run_once(s: ScalingBenchSettings, actors: int, topics: dict[str, str]) -> dict[str, Any]:
    import ray

    from workers.driver.pipeline import Pipeline

    os.environ["LRSA_BENCH_STAGE_DELAY_S"] = str(s.stage_delay_ms / 1000)  # read by the driver, sent to the actors
    ws = WorkerSettings(**{**s.model_dump(include=set(WorkerSettings.model_fields)),
                           "input_topic": topics["in"], "output_topic": topics["out"], "dlq_topic": topics["dlq"],
                           "group_id": f"scaling-{topics['in']}", "exit_when_idle": 2.0, "metrics_port": 0,
                           "control_port": None, "stage_metrics": False,
                           "rationale_enabled": True, "rationale_processor": "workers.bench.scaling:SlowStage",
                           "rationale_pool_min": actors, "rationale_pool_max": actors, "rationale_num_cpus": 0.5,
                           "score_enabled": False})
    p = Pipeline(ws)
    try:
        code = p.run()
    finally:
        for handle in [*getattr(p, "actors", []), *(a for pool in getattr(getattr(p, "pools", None), "actors", {})
                                                     .values() for a in pool)]:
            ray.kill(handle)
    if code != 0:
        raise RuntimeError(f"the worker exited {code}")
    consumed = sum(st["consumed"] for st in p.final_statuses)
    if consumed != s.posts:
        raise RuntimeError(f"the worker consumed {consumed} of {s.posts} posts")
    ids = output_ids(s, topics["out"])
    if len(ids) != s.posts or max(ids.values()) != 1:
        raise RuntimeError(f"{len(ids)} distinct results of {s.posts} posts, {sum(ids.values())} in all")
    return {"actors": actors, "posts_per_s": round(posts_per_s(p.final_statuses), 1)}


def output_ids(s: ScalingBenchSettings, topic: str) -> Counter:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers, **s.client_options())
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    ids: Counter = Counter()
    deadline = time.monotonic() + 60
    while any(consumer.position(tp) < end for tp, end in ends.items()) and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            ids.update(r.key for r in recs)
    consumer.close()
    return ids


def run_bench(s: ScalingBenchSettings, as_json: bool = False) -> int:
    import ray

    from workers.bench.run import bench_stack, print_figures
    from workers.devstack.kafka_stack import create_topics
    from workers.driver.pipeline import init_ray

    with bench_stack(s, "scaling") as (s, _):
        init_ray(WorkerSettings(ray_num_cpus=s.ray_num_cpus, ray_address=s.ray_address))
        tag = os.urandom(3).hex()
        out: dict[str, Any] = {"posts": s.posts, "stage_delay_ms": s.stage_delay_ms, "batch_size": s.batch_size,
                               "partitions": s.partitions, "cpus": os.cpu_count()}
        for actors in (1, 2):
            topics = {k: f"scaling-{k}-{actors}-{tag}" for k in ("in", "out", "dlq")}
            create_topics(s.bootstrap_servers, list(topics.values()), s.partitions, security=s)
            fill(s, topics["in"], s.posts)
            out[f"actors_{actors}_posts_per_s"] = run_once(s, actors, topics)["posts_per_s"]
        out["ratio_2_over_1"] = round(out["actors_2_posts_per_s"] / out["actors_1_posts_per_s"], 3)
        out["ideal_posts_per_s_1_actor"] = round(1000 / s.stage_delay_ms, 1) if s.stage_delay_ms else None
        ray.shutdown()
    print_figures(out, as_json)
    return 0

"""Metrics: actor buffers reach the driver's /metrics; counters move and the pool grows and
shrinks during a real run; the alert rules and the dashboard only name metrics that exist."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streaming_helpers import ECHO_STAGE, make_dataset, produce, start_worker, wait_exit, wait_for
from lrsa.ports import free_port
from workers.metrics import SPECS, DriverMetrics, MetricsBuffer
from repo_paths import REPO

DEPLOY = REPO / "deploy"


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def total(samples: dict, name: str, **match: str) -> float:
    return sum(v for (n, labels), v in samples.items()
               if n == name and all(dict(labels).get(k) == want for k, want in match.items()))


def test_buffer_drains_into_driver_metrics() -> None:
    buf, driver = MetricsBuffer(), DriverMetrics()
    buf.inc("lrsa_posts_dead_lettered_total", 2, reason="empty_text")
    buf.observe("lrsa_stage_latency_seconds", 0.02, stage="score")
    buf.set("lrsa_consumer_lag_messages", 7, topic="posts", partition=0)
    driver.apply(buf.drain())
    buf.inc("lrsa_posts_dead_lettered_total", 1, reason="empty_text")
    driver.apply(buf.drain())
    port = driver.serve("127.0.0.1", 0)
    try:
        s = scrape(port)
    finally:
        driver.close()
    assert total(s, "lrsa_posts_dead_lettered_total", reason="empty_text") == 3
    assert total(s, "lrsa_stage_latency_seconds_count", stage="score") == 1
    assert total(s, "lrsa_consumer_lag_messages", topic="posts", partition="0") == 7
    assert buf.drain()["counters"] == {}  # drained deltas are not applied twice


def test_removed_gauge_label_set_leaves_the_registry() -> None:
    buf, driver = MetricsBuffer(), DriverMetrics()
    buf.set("lrsa_consumer_lag_messages", 7, topic="posts", partition=0)
    buf.set("lrsa_consumer_lag_messages", 9, topic="posts", partition=1)
    driver.apply(buf.drain())
    buf.remove("lrsa_consumer_lag_messages", topic="posts", partition=0)
    driver.apply(buf.drain())
    get = driver.registry.get_sample_value
    assert get("lrsa_consumer_lag_messages", {"topic": "posts", "partition": "0"}) is None
    assert get("lrsa_consumer_lag_messages", {"topic": "posts", "partition": "1"}) == 9
    driver.apply(buf.drain())  # later drains neither bring it back nor fail on the absent series
    assert get("lrsa_consumer_lag_messages", {"topic": "posts", "partition": "0"}) is None
    buf.remove("lrsa_consumer_lag_messages", topic="posts", partition=1)
    buf.set("lrsa_consumer_lag_messages", 3, topic="posts", partition=1)  # handed back within one interval
    driver.apply(buf.drain())
    assert get("lrsa_consumer_lag_messages", {"topic": "posts", "partition": "1"}) == 3


def test_zeroed_counter_is_exposed_before_its_first_increment() -> None:
    driver = DriverMetrics()
    get = driver.registry.get_sample_value
    assert get("lrsa_posts_emitted_total", {"topic": "results"}) is None
    driver.zero("lrsa_posts_emitted_total", topic="results")
    assert get("lrsa_posts_emitted_total", {"topic": "results"}) == 0


def test_partition_leaving_the_actor_drops_its_lag() -> None:
    """An ingest actor that loses a partition stops reporting its lag (it used to report its last
    value for ever, next to the new owner's). No Kafka: on_lost is called directly; on_revoked ends
    in the same `_forget` after its hand-over commit."""
    from kafka import TopicPartition

    from workers.ingest.actor import IngestWorker

    class Tracker:
        def revoke(self, tps):
            pass

    worker = IngestWorker.__new__(IngestWorker)  # only the state _forget touches
    worker.index, worker.metrics, worker.tracker, worker._lag, worker._originals = 0, MetricsBuffer(), Tracker(), {}, {}
    driver = DriverMetrics()
    for p in (0, 1):
        worker._lag[TopicPartition("posts", p)] = 5
        worker.metrics.set("lrsa_consumer_lag_messages", 5 + p, topic="posts", partition=p)
    driver.apply(worker.drain_metrics())
    worker.on_lost([TopicPartition("posts", 0)])
    driver.apply(worker.drain_metrics())
    get = driver.registry.get_sample_value
    assert get("lrsa_consumer_lag_messages", {"topic": "posts", "partition": "0"}) is None
    assert get("lrsa_consumer_lag_messages", {"topic": "posts", "partition": "1"}) == 6
    assert TopicPartition("posts", 0) not in worker._lag


@pytest.mark.parametrize("path", ["prometheus/lrsa-alerts.yml", "grafana/lrsa-streaming.json"])
def test_deploy_files_name_only_existing_metrics(path: str) -> None:
    import workers.stages.rationale  # noqa: F401  (the stage actors' own metrics register on import)
    import workers.stages.score  # noqa: F401
    from prometheus_client import REGISTRY

    text = (DEPLOY / path).read_text()
    names = set(SPECS) | {m.name for m in REGISTRY.collect() if m.name.startswith("lrsa_")}
    known = names | {n.removesuffix("_total") for n in names} | {f"{n}_total" for n in names}
    used = set(re.findall(r"\b(lrsa_[a-z_]+?)(?:_bucket|_sum|_count)?\b", text))
    assert used and used <= known, used - known


def test_grafana_panels_have_units_and_filter_by_job_and_instance() -> None:
    """Every panel has a unit; the dashboard has job and instance variables (the driver's job
    lrsa-worker and the stage actors' lrsa-stages) and every series a panel reads is filtered by them."""
    dashboard = json.loads((DEPLOY / "grafana" / "lrsa-streaming.json").read_text())
    assert {"datasource", "job", "instance"} <= {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        for target in panel["targets"]:
            series = re.findall(r"\b(lrsa_[a-z_]+)(\{[^}]*\})?", target["expr"])
            assert series and all('job=~"$job"' in labels and 'instance=~"$instance"' in labels
                                  for _, labels in series), target["expr"]


@pytest.mark.kafka
@pytest.mark.ray
def test_counters_move_during_a_run(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    data = make_dataset(4_000, 100, seed=5)
    topics = {"in": kafka_topic("m-in", 2), "out": kafka_topic("m-out", 2), "dlq": kafka_topic("m-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    port, log = free_port(), tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, "metrics", "--rationale-enabled", "--rationale-processor",
                          ECHO_STAGE, "--batch-size", "20", "--metrics-port", str(port),
                          "--rationale-pool-max", "2", "--pool-shrink-after-s", "5", log=log,
                          env={"LRSA_TEST_STAGE_DELAY_S": "0.008"})  # ~32 s of work for one actor
    try:
        wait_for(lambda: total(scrape_or_empty(port), "lrsa_posts_emitted_total") > 0, 90, what="first results")
        first = scrape(port)
        wait_for(lambda: total(scrape(port), "lrsa_posts_emitted_total") > total(first, "lrsa_posts_emitted_total"),
                 30, what="emitted counter to move")
        second = scrape(port)
        # The stage's slots stay (nearly) all in use: the pool grows from min 1 to max 2 after 5 s.
        wait_for(lambda: total(scrape(port), "lrsa_actor_pool_size", stage="rationale") == 2, 30,
                 what="the rationale pool to grow")
        shares = [v for (n, _), v in scrape(port).items() if n == "lrsa_stage_slot_utilisation_ratio"]
        assert shares and all(0.0 <= v <= 1.0 for v in shares)
        # Once the input is done the slots stay idle: after 5 s the pool is back at its min.
        wait_for(lambda: total(scrape(port), "lrsa_actor_pool_size", stage="rationale") == 1, 120,
                 what="the rationale pool to shrink")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert wait_exit(worker, 60, log) == 0
    assert total(second, "lrsa_posts_consumed_total") > 0
    assert total(second, "lrsa_posts_dead_lettered_total") > 0
    assert {dict(l)["reason"] for (n, l) in second if n == "lrsa_posts_dead_lettered_total"} >= {"invalid_json"}
    assert total(second, "lrsa_stage_latency_seconds_count", stage="rationale") > 0
    assert total(second, "lrsa_stage_batch_size_count", stage="rationale") > 0
    assert total(second, "lrsa_actor_pool_size", stage="rationale") >= 1
    assert any(n == "lrsa_consumer_lag_messages" for n, _ in second)
    assert any(n == "lrsa_inflight_batches" for n, _ in second)


def scrape_or_empty(port: int) -> dict:
    try:
        return scrape(port)
    except OSError:  # not listening yet
        return {}

"""A real Prometheus server (Debian's `prometheus` binary) scrapes the worker's metrics and loads the
alert rules: the target comes up, worker metrics are queryable, a removed lag series goes stale, the
rules evaluate without errors, and a worker whose endpoint goes away raises LrsaWorkerDown (pending).

Needs the `prometheus` binary (scripts/setup.sh installs the package); skips and says so without it.
The server runs on a free loopback port with a temp config and data dir; every wait has a deadline
and the server is killed in teardown."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from lrsa.ports import free_port
from streaming_helpers import ECHO_STAGE, make_dataset, produce, start_worker, wait_exit, wait_for
from workers.metrics import DriverMetrics, MetricsBuffer
from repo_paths import REPO

RULES = REPO / "deploy" / "prometheus" / "lrsa-alerts.yml"
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus binary not found: install Debian's `prometheus` package (scripts/setup.sh does)")


class Prometheus:
    def __init__(self, tmp_path: Path, targets: list[str], config_doc: dict | None = None) -> None:
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps(config_doc or {  # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "lrsa-worker", "static_configs": [{"targets": targets}]}],
        }))
        self.log = tmp_path / "prometheus.log"
        self._log_file = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path: str, **params: str) -> dict | None:
        """GET /api/v1/<path>; None while the server is not answering yet."""
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            body = json.loads(urllib.request.urlopen(url, timeout=5).read())
        except OSError:
            return None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        return data["result"] if data else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log_file.close()


@pytest.fixture
def start_prometheus(tmp_path):
    servers: list[Prometheus] = []

    def start(targets: list[str], config_doc: dict | None = None) -> Prometheus:
        servers.append(Prometheus(tmp_path, targets, config_doc))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.slow  # a Prometheus server process scraping and evaluating the rules
def test_prometheus_scrapes_worker_metrics_and_evaluates_the_rules(start_prometheus) -> None:
    driver, buf = DriverMetrics(), MetricsBuffer()
    buf.inc("lrsa_posts_consumed_total", 5, topic="posts")
    buf.set("lrsa_consumer_lag_messages", 7, topic="posts", partition=0)
    buf.set("lrsa_consumer_lag_messages", 9, topic="posts", partition=1)
    driver.apply(buf.drain())
    worker_port = driver.serve("127.0.0.1", 0)
    served = True
    prom = start_prometheus([f"127.0.0.1:{worker_port}"])
    try:
        wait_for(lambda: [t["health"] for t in (prom.api("targets") or {}).get("activeTargets", [])] == ["up"],
                 60, what="the worker's scrape target to be up")
        wait_for(lambda: len(prom.query("lrsa_consumer_lag_messages")) == 2, 30, what="the lag of both partitions")
        assert {(r["metric"]["partition"], r["value"][1]) for r in prom.query("lrsa_consumer_lag_messages")} == {("0", "7"), ("1", "9")}
        assert prom.query('lrsa_posts_consumed_total{job="lrsa-worker"}')[0]["value"][1] == "5"

        # A partition that left the worker: its series is dropped, and Prometheus marks it stale.
        buf.remove("lrsa_consumer_lag_messages", topic="posts", partition=0)
        driver.apply(buf.drain())
        wait_for(lambda: {r["metric"]["partition"] for r in prom.query("lrsa_consumer_lag_messages")} == {"1"}, 30,
                 what="the removed partition's lag to go stale")

        # Every rule of deploy/prometheus/lrsa-alerts.yml loads and evaluates without an error.
        def rules() -> list[dict]:
            return [r for g in (prom.api("rules") or {}).get("groups", []) for r in g["rules"]]
        wait_for(lambda: rules() and all(r["health"] == "ok" for r in rules()), 30, what="the rules to evaluate")
        assert len([r for r in rules() if r["type"] == "alerting"]) >= 15

        # The worker's endpoint goes away: up == 0 and LrsaWorkerDown is pending (its `for:` is 2 m).
        driver.close()
        served = False
        wait_for(lambda: any(a["labels"]["alertname"] == "LrsaWorkerDown" and a["state"] == "pending"
                             for a in (prom.api("alerts") or {}).get("alerts", [])), 30,
                 what="LrsaWorkerDown to be pending")
    finally:
        if served:
            driver.close()


@pytest.mark.kafka
@pytest.mark.ray
def test_prometheus_scrapes_a_running_worker(start_prometheus, kafka_bootstrap, kafka_topic, tmp_path) -> None:
    """`lrsa run` against the test broker, scraped by a real Prometheus as job lrsa-worker."""
    data = make_dataset(300, 10, seed=7)
    topics = {"in": kafka_topic("p-in", 2), "out": kafka_topic("p-out", 2), "dlq": kafka_topic("p-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    port, log = free_port(), tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, "prom", "--rationale-enabled", "--rationale-processor",
                          ECHO_STAGE, "--metrics-port", str(port), log=log)
    prom = start_prometheus([f"127.0.0.1:{port}"])
    try:
        def emitted() -> float:
            return sum(float(r["value"][1]) for r in prom.query('lrsa_posts_emitted_total{job="lrsa-worker"}'))
        wait_for(lambda: prom.query('up{job="lrsa-worker"}') and prom.query('up{job="lrsa-worker"}')[0]["value"][1] == "1",
                 120, what="the worker's scrape target to be up")
        wait_for(lambda: emitted() >= len(data.good_ids), 120, every_s=1, what="all results counted in Prometheus")
        # The group's first join often revokes and re-assigns at once: the lag is reported again by
        # the owner after its next --metrics-interval-s.
        wait_for(lambda: prom.query('lrsa_consumer_lag_messages{job="lrsa-worker"}'), 30, what="lag series scraped")
        wait_for(lambda: prom.query('lrsa_actor_pool_size{job="lrsa-worker", stage="rationale"}'), 30,
                 what="pool size scraped")
        assert not prom.query('ALERTS{alertname="LrsaNoOutput"}')
    finally:
        worker.send_signal(signal.SIGTERM)
        assert wait_exit(worker, 60, log) == 0


SHIPPED = RULES.parent / "prometheus.yml"


@pytest.mark.kafka
@pytest.mark.ray
def test_the_shipped_config_scrapes_the_stage_actors_through_the_targets_file(start_prometheus, kafka_bootstrap,
                                                                               kafka_topic, tmp_path) -> None:
    """deploy/prometheus/prometheus.yml as shipped (scrape interval shortened, paths made absolute):
    `lrsa run --metrics-sd-file` writes the driver's and each stage actor's /metrics target, job
    lrsa-stages scrapes every rationale actor (two here) with its stage label, job lrsa-worker the
    driver, and the driver is not scraped twice."""
    import yaml

    doc = yaml.safe_load(SHIPPED.read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert {"lrsa-worker", "lrsa-stages"} <= set(jobs)
    doc["scrape_configs"] = [jobs["lrsa-worker"], jobs["lrsa-stages"]]  # the next test scrapes them all
    targets_file = tmp_path / "lrsa-targets.json"
    assert jobs["lrsa-stages"]["file_sd_configs"][0]["files"] == [targets_file.name]
    jobs["lrsa-stages"]["file_sd_configs"][0].update(files=[str(targets_file)], refresh_interval="1s")
    data = make_dataset(100, 0, seed=3)
    topics = {"in": kafka_topic("sd-in", 2), "out": kafka_topic("sd-out", 2), "dlq": kafka_topic("sd-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    port, log = free_port(), tmp_path / "worker.log"
    jobs["lrsa-worker"]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    doc.update(rule_files=[str(RULES)],
               **{"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}})
    worker = start_worker(kafka_bootstrap, topics, "prom-sd", "--rationale-enabled", "--rationale-processor",
                          ECHO_STAGE, "--rationale-pool-min", "2", "--rationale-pool-max", "2", "--metrics-port",
                          str(port), "--metrics-sd-file", str(targets_file), log=log)
    try:
        wait_for(targets_file.exists, 120, what="the targets file")
        groups = json.loads(targets_file.read_text())
        stage_targets = [t for g in groups if g["labels"].get("stage") == "rationale" for t in g["targets"]]
        assert len(stage_targets) == 2 and [g["targets"] for g in groups if g["labels"]["role"] == "driver"] == \
            [[f"127.0.0.1:{port}"]]
        prom = start_prometheus([], doc)

        def up(job: str) -> list[dict]:
            return [r for r in prom.query(f'up{{job="{job}"}}') if r["value"][1] == "1"]
        wait_for(lambda: len(up("lrsa-stages")) == 2 and len(up("lrsa-worker")) == 1, 90,
                 what="both stage actors and the driver scraped")
        assert {r["metric"]["stage"] for r in up("lrsa-stages")} == {"rationale"}
        assert {r["metric"]["instance"] for r in up("lrsa-stages")} == set(stage_targets)  # not the driver
        wait_for(lambda: len(prom.query('process_resident_memory_bytes{job="lrsa-stages", stage="rationale"}')) == 2,
                 30, what="the stage actors' own process metrics")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert wait_exit(worker, 60, log) == 0


GRAFANA = RULES.parent.parent / "grafana" / "lrsa-streaming.json"
# Series a fresh pipeline cannot have: the broker's error class labels every refused record, an
# open set (the alert on it needs no series until a refusal happens).
ONLY_ON_EVENTS = {"lrsa_send_refused_total"}


def queried_metrics() -> dict[str, set[str]]:
    """metric name -> where it is queried (Grafana panel titles, alert names), from the shipped files."""
    import re

    import yaml

    found: dict[str, set[str]] = {}

    def add(expr: str, where: str) -> None:
        for name in re.findall(r"\b(lrsa_[a-z0-9_]+)", expr):
            found.setdefault(name, set()).add(where)
    for panel in json.loads(GRAFANA.read_text())["panels"]:
        for target in panel.get("targets", []):
            add(target.get("expr", ""), f"panel {panel['title']!r}")
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            add(rule["expr"], f"alert {rule.get('alert')}")
    return found


def test_every_queried_metric_is_exported_by_a_component() -> None:
    """Every lrsa_* metric a panel or an alert reads is one the driver, a stage actor or the
    aggregator exports (by its exposed name: counters with _total, histograms' _bucket/_sum/_count)."""
    from prometheus_client import REGISTRY

    import workers.stages.gate  # noqa: F401 - the stage actors' module-level metrics
    import workers.stages.rationale  # noqa: F401
    import workers.stages.score  # noqa: F401
    from workers.aggregate.service import AggregateMetrics

    exported = set()
    for registry in (REGISTRY, DriverMetrics().registry, AggregateMetrics().registry):
        for family in registry.collect():  # exposed names, whether or not a label set exists yet
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                        "gauge": ("",)}[family.type]
            exported |= {family.name + suffix for suffix in suffixes}
    queried = queried_metrics()
    assert len(queried) >= 25, sorted(queried)
    assert {name: sorted(where) for name, where in queried.items() if name not in exported} == {}


@pytest.mark.kafka
@pytest.mark.ray
@pytest.mark.triton
def test_the_shipped_config_finds_a_sample_of_every_panel_and_alert_metric(
        start_prometheus, kafka_bootstrap, kafka_topic, tmp_path, triton_server, tiny_checkpoint) -> None:
    """deploy/prometheus/prometheus.yml as shipped (ports pointed at this test's processes, intervals
    shortened) against a pipeline with both stages (the real rationale engine on a tiny model, the
    score stage on a real tritonserver), a few malformed posts, and `lrsa aggregate` on its output:
    every job is up, and every metric a Grafana panel or an alert rule queries has a sample."""
    import yaml

    doc = yaml.safe_load(SHIPPED.read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {"lrsa-worker", "lrsa-stages", "lrsa-aggregate", "triton"}
    targets_file = tmp_path / "lrsa-targets.json"
    jobs["lrsa-stages"]["file_sd_configs"][0].update(files=[str(targets_file)], refresh_interval="1s")
    worker_port, aggregate_port = free_port(), free_port()
    jobs["lrsa-worker"]["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    jobs["lrsa-aggregate"]["static_configs"] = [{"targets": [f"127.0.0.1:{aggregate_port}"]}]
    jobs["triton"]["static_configs"] = [{"targets": [f"127.0.0.1:{triton_server.metrics_port}"]}]
    doc.update(rule_files=[str(RULES)],
               **{"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}})

    data = make_dataset(40, 4, seed=5)
    topics = {"in": kafka_topic("all-in", 2), "out": kafka_topic("all-out", 2), "dlq": kafka_topic("all-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    log, agg_log = tmp_path / "worker.log", tmp_path / "aggregate.log"
    worker = start_worker(kafka_bootstrap, topics, "prom-all", "--rationale-enabled", "--rationale-processor",
                          "rationale_helpers:tiny_rationale_processor", "--score-enabled",
                          "--scorer-url", triton_server.grpc_url, "--metrics-port", str(worker_port),
                          "--metrics-sd-file", str(targets_file), log=log,
                          env={"LRSA_SCORER_CHECKPOINT": str(tiny_checkpoint)})
    aggregator = subprocess.Popen(
        [sys.executable, "-m", "lrsa_cli.main", "aggregate", "--bootstrap-servers", kafka_bootstrap,
         "--input-topic", topics["out"], "--aggregates-topic", kafka_topic("all-agg", 1),
         "--alerts-topic", kafka_topic("all-alerts", 1), "--group-id", "prom-all-agg",
         "--state-dir", str(tmp_path / "agg-state"), "--metrics-port", str(aggregate_port)],
        cwd=RULES.parent.parent.parent, stdout=open(agg_log, "ab"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        prom = start_prometheus([], doc)
        wanted = set(queried_metrics()) - ONLY_ON_EVENTS

        def missing() -> set[str]:
            have = {r["metric"]["__name__"] for r in prom.query('{__name__=~"lrsa_.+"}')}
            return wanted - have

        def jobs_up() -> set[str]:
            return {r["metric"]["job"] for r in prom.query("up == 1")}
        wait_for(lambda: jobs_up() == set(jobs), 120, what=f"every job up (have {jobs_up()})")
        wait_for(lambda: not missing(), 120, what=f"a sample of every queried metric (missing {missing()})")
        assert prom.query('nv_inference_request_success{job="triton"}'), "Triton's own metrics"
        assert prom.query('lrsa_aggregate_results_total{job="lrsa-aggregate"}'), "the aggregator's metrics"
        rules = prom.api("rules")
        assert all(r.get("health") == "ok" for g in rules["groups"] for r in g["rules"]), rules
    finally:
        worker.send_signal(signal.SIGTERM)
        aggregator.send_signal(signal.SIGTERM)
        try:
            aggregator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            aggregator.kill()
        assert wait_exit(worker, 60, log) == 0, log.read_text()[-3000:]

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
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from lrsa.ports import free_port
from streaming_helpers import ECHO_STAGE, make_dataset, produce, start_worker, wait_exit, wait_for
from workers.metrics import DriverMetrics, MetricsBuffer

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "lrsa-alerts.yml"
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
    buf.set("lrsa_consumer_lag", 7, topic="posts", partition=0)
    buf.set("lrsa_consumer_lag", 9, topic="posts", partition=1)
    driver.apply(buf.drain())
    worker_port = driver.serve("127.0.0.1", 0)
    served = True
    prom = start_prometheus([f"127.0.0.1:{worker_port}"])
    try:
        wait_for(lambda: [t["health"] for t in (prom.api("targets") or {}).get("activeTargets", [])] == ["up"],
                 60, what="the worker's scrape target to be up")
        wait_for(lambda: len(prom.query("lrsa_consumer_lag")) == 2, 30, what="the lag of both partitions")
        assert {(r["metric"]["partition"], r["value"][1]) for r in prom.query("lrsa_consumer_lag")} == {("0", "7"), ("1", "9")}
        assert prom.query('lrsa_posts_consumed_total{job="lrsa-worker"}')[0]["value"][1] == "5"

        # A partition that left the worker: its series is dropped, and Prometheus marks it stale.
        buf.remove("lrsa_consumer_lag", topic="posts", partition=0)
        driver.apply(buf.drain())
        wait_for(lambda: {r["metric"]["partition"] for r in prom.query("lrsa_consumer_lag")} == {"1"}, 30,
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
        wait_for(lambda: prom.query('lrsa_consumer_lag{job="lrsa-worker"}'), 30, what="lag series scraped")
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
    assert set(jobs) == {"lrsa-worker", "lrsa-stages"}
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

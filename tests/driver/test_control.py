"""The driver's control endpoint and backlog autoscaling.

Without Ray or Kafka: the endpoint's auth (missing token 401, wrong 403, nothing reaches the loop),
probes without a token, and a non-loopback endpoint without a token refused at start.
With a real broker and `lrsa run`: a slow stage under a backlog grows its pool to the max and back
to the min once idle, with the decisions in /status and /metrics; `lrsa status` shows the pools;
`lrsa scale` with a wrong or missing token changes nothing, with the token it resizes the pool;
pause/resume flip readiness; POST /drain stops the worker; every post is emitted exactly once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from lrsa.ports import free_port
from streaming_helpers import ECHO_STAGE, REPO, ids_of, produce, read_all, start_worker, wait_exit, wait_for
from workers.driver.control import ControlServer, ControlState

TOKEN = "t0ken-for-tests"


def http(port: int, method: str, path: str, token: str | None = None, body: dict | None = None):
    """(status, JSON body)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_requests_without_the_right_token_are_refused_and_never_reach_the_loop() -> None:
    state = ControlState()
    server = ControlServer(state, "127.0.0.1", 0, TOKEN)
    port = server.start()
    bounds = {"rationale": (1, 2)}
    asked: list[str] = []
    stop = threading.Event()

    def loop() -> None:  # stands in for the driver's supervise loop
        while not stop.is_set():
            state.publish({"pools": {k: {"min": lo, "max": hi} for k, (lo, hi) in bounds.items()}}, (True, "consuming"))
            for kind, args, future in state.take_requests():
                asked.append(kind)
                if future.set_running_or_notify_cancel():
                    bounds[args["stage"]] = (args["min"], args["max"])
                    future.set_result((200, {"stage": args["stage"]}))
            time.sleep(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        assert http(port, "GET", "/healthz")[0] == 200  # probes need no token
        assert http(port, "GET", "/readyz")[0] == 200
        assert http(port, "GET", "/status")[0] == 401
        assert http(port, "GET", "/status", token="wrong")[0] == 403
        resize = {"min": 3, "max": 4}
        assert http(port, "POST", "/pools/rationale", body=resize)[0] == 401
        assert http(port, "POST", "/pools/rationale", token="wrong", body=resize)[0] == 403
        assert http(port, "POST", "/pools/rationale", token=TOKEN[:-1], body=resize)[0] == 403
        assert http(port, "POST", "/drain", token="wrong")[0] == 403
        time.sleep(0.2)
        assert asked == [] and bounds == {"rationale": (1, 2)}  # nothing changed
        status, body = http(port, "GET", "/status", token=TOKEN)
        assert status == 200 and body["pools"]["rationale"] == {"min": 1, "max": 2} and body["ready"]
        assert http(port, "POST", "/pools/rationale", token=TOKEN, body={"min": "x"})[0] == 400
        assert http(port, "POST", "/pools/rationale", token=TOKEN, body=resize)[0] == 200
        assert bounds == {"rationale": (3, 4)} and asked == ["resize"]
    finally:
        stop.set()
        server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_stale_loop_fails_the_liveness_probe() -> None:
    state = ControlState(stale_after_s=0.2)
    server = ControlServer(state, "127.0.0.1", 0, None)
    port = server.start()
    try:
        assert http(port, "GET", "/healthz")[0] == 200  # starting: alive
        state.publish({}, (True, "consuming"))
        assert http(port, "GET", "/readyz")[0] == 200
        assert http(port, "GET", "/status")[0] == 200  # no token configured: loopback is trusted
        time.sleep(0.4)
        assert http(port, "GET", "/healthz")[0] == 503
        assert http(port, "GET", "/readyz")[0] == 503
    finally:
        server.close()


def test_a_non_loopback_endpoint_without_a_token_does_not_start(tmp_path) -> None:
    from workers.config import WorkerSettings
    from workers.driver.control_plane import ControlPlane

    assert not ControlPlane(WorkerSettings(control_host="0.0.0.0", control_port=0)).start()
    empty = tmp_path / "token"
    empty.write_text("\n")
    assert not ControlPlane(WorkerSettings(control_port=0, control_token_file=empty)).start()
    empty.write_text(TOKEN + "\n")
    plane = ControlPlane(WorkerSettings(control_host="0.0.0.0", control_port=0, control_token_file=empty))
    try:
        assert plane.start() and plane.port
    finally:
        plane.server.close()


def lrsa(*args: str, token: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LRSA_CONTROL_TOKEN"}
    if token:
        env["LRSA_CONTROL_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "lrsa_cli.main", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def metric(port: int, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.kafka
@pytest.mark.ray
def test_backlog_scaling_and_operator_controls_on_a_running_worker(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    topics = {"in": kafka_topic("ctl-in", 2), "out": kafka_topic("ctl-out", 2), "dlq": kafka_topic("ctl-dlq", 1)}
    n = 3000
    posts = [(f"p-{i}".encode(), json.dumps({"id": f"p-{i}", "text": f"post {i} about the camera"}).encode())
             for i in range(n)]
    metrics_port, log = free_port(), tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, "control", "--rationale-enabled", "--rationale-processor",
                          ECHO_STAGE, "--rationale-pool-max", "2", "--rationale-num-cpus", "0.5",
                          "--batch-size", "10", "--metrics-port", str(metrics_port), "--control-port", "0",
                          "--pool-grow-after-s", "2", "--pool-shrink-after-s", "3", "--pool-up-cooldown-s", "1",
                          "--pool-down-cooldown-s", "3", "--no-stage-metrics",
                          "--control-bounds-file", str(tmp_path / "bounds.json"), log=log,
                          env={"LRSA_TEST_STAGE_DELAY_S": "0.003", "LRSA_CONTROL_TOKEN": TOKEN})
    try:
        wait_for(lambda: re.search(r"control endpoint at http://127\.0\.0\.1:(\d+)", log.read_text()), 120,
                 what="the control endpoint")
        port = int(re.search(r"control endpoint at http://127\.0\.0\.1:(\d+)", log.read_text()).group(1))
        url = ("--control-url", f"http://127.0.0.1:{port}")
        wait_for(lambda: http(port, "GET", "/readyz")[0] == 200, 120, what="the worker to be ready")

        # `lrsa status` shows the pools; a scale without the token, or with a wrong one, changes nothing
        shown = lrsa("status", "--json", *url, token=TOKEN)
        assert shown.returncode == 0, shown.stderr
        pool = json.loads(shown.stdout)["pools"]["rationale"]
        assert (pool["actors"], pool["min"], pool["max"]) == (1, 1, 2)
        assert "rationale: 1 (1..2)" in lrsa("status", *url, token=TOKEN).stdout
        refused = lrsa("scale", "rationale=2:3", *url, token="wrong")
        assert refused.returncode == 1 and "HTTP 403" in refused.stderr
        refused = lrsa("scale", "rationale=2:3", *url, token=None)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        assert lrsa("status", *url, token=None).returncode == 1  # /status needs the token too
        assert http(port, "POST", "/pause")[0] == 401
        time.sleep(1.5)  # a tick or more: had anything been applied, it would show now
        status = http(port, "GET", "/status", token=TOKEN)[1]
        assert (status["pools"]["rationale"]["min"], status["pools"]["rationale"]["max"]) == (1, 2)
        assert not status["paused"] and status["decisions"] == []

        # a backlog through a slow stage: the pool grows to its max, then shrinks back once idle
        produce(kafka_bootstrap, topics["in"], posts)
        wait_for(lambda: http(port, "GET", "/status", token=TOKEN)[1]["pools"]["rationale"]["actors"] == 2, 90,
                 what="the pool to grow to its max (2)")
        peak = http(port, "GET", "/status", token=TOKEN)[1]
        ups = [d for d in peak["decisions"] if d["direction"] == "up"]
        assert ups and ups[0]["reason"] in {"backlog", "lag_trend", "occupancy"} and ups[0]["detail"]
        assert peak["lag"] and all(re.fullmatch(rf"{topics['in']}/\d", k) for k in peak["lag"])
        wait_for(lambda: len(ids_of(read_all(kafka_bootstrap, topics["out"]))) == n, 180, every_s=2,
                 what="every post's result")
        wait_for(lambda: http(port, "GET", "/status", token=TOKEN)[1]["pools"]["rationale"]["actors"] == 1, 90,
                 what="the pool to shrink back to its min once idle")
        wait_for(lambda: not http(port, "GET", "/status", token=TOKEN)[1]["pools"]["rationale"]["draining"], 60,
                 what="the scaled-down actor to drain and end")
        downs = [d for d in http(port, "GET", "/status", token=TOKEN)[1]["decisions"] if d["direction"] == "down"]
        assert downs and downs[-1]["reason"] == "idle" and (downs[-1]["size_from"], downs[-1]["size_to"]) == (2, 1)
        wait_for(lambda: metric(metrics_port, "lrsa_scaling_decisions_total", stage="rationale", direction="down",
                                reason="idle") >= 1, 10, what="the decision in /metrics")
        assert metric(metrics_port, "lrsa_scaling_decisions_total", stage="rationale", direction="up") >= 1
        assert metric(metrics_port, "lrsa_actor_pool_size", stage="rationale") == 1

        # the operator resizes: the pool goes to the new min at once, whatever the cooldowns
        scaled = lrsa("scale", "rationale=2:3", *url, token=TOKEN)
        assert scaled.returncode == 0 and "1:2 -> 2:3" in scaled.stdout, scaled.stderr
        wait_for(lambda: http(port, "GET", "/status", token=TOKEN)[1]["pools"]["rationale"]["actors"] == 2, 60,
                 what="the pool to reach its new min")
        last = http(port, "GET", "/status", token=TOKEN)[1]
        assert last["decisions"][-1]["reason"] == "min"
        assert metric(metrics_port, "lrsa_pool_bounds", stage="rationale", bound="max") == 3
        kept = json.loads((tmp_path / "bounds.json").read_text())  # what a restart starts from
        assert kept["rationale"] == {"min": 2, "max": 3}

        # pause: not ready, nothing fetched; resume: ready again
        assert lrsa("control", "pause", *url, token=TOKEN).returncode == 0
        status, body = http(port, "GET", "/readyz")
        assert status == 503 and "paused" in body["reason"]
        wait_for(lambda: metric(metrics_port, "lrsa_partitions_paused") >= 1, 10, what="paused partitions")
        assert http(port, "POST", "/resume", token=TOKEN)[0] == 200
        wait_for(lambda: http(port, "GET", "/readyz")[0] == 200, 10, what="ready after resume")

        # drain: the graceful stop
        assert http(port, "POST", "/drain", token=TOKEN)[0] == 202
        assert wait_exit(worker, 60, log) == 0
    finally:
        if worker.poll() is None:
            worker.terminate()
            wait_exit(worker, 60, log)
    out = ids_of(read_all(kafka_bootstrap, topics["out"]))
    assert set(out) == {f"p-{i}" for i in range(n)} and set(out.values()) == {1}  # each exactly once
    assert read_all(kafka_bootstrap, topics["dlq"]) == []

"""`lrsa run` does its job by default (issue 32 item 1): the score stage is on without a flag, and
`lrsa run --serve` starts its own tritonserver for the checkpoint, scores every post through it
and stops it when the worker ends. A worker whose scorer is missing fails its start in one line
that says how to get one."""

from __future__ import annotations

import json

import psutil
import pytest

from streaming_helpers import make_dataset, produce, read_all, start_worker, wait_exit
from repo_paths import REPO

pytestmark = pytest.mark.kafka


def tritonservers() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "tritonserver"}


def test_run_serve_scores_every_post_with_its_own_tritonserver(kafka_bootstrap, kafka_topic, tmp_path,
                                                               tiny_checkpoint) -> None:
    data = make_dataset(40, 0, seed=21)
    topics = {"in": kafka_topic("serve-in", 2), "out": kafka_topic("serve-out", 2), "dlq": kafka_topic("serve-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    before = tritonservers()
    log = tmp_path / "worker.log"
    # no --score-enabled: the default (the suite's conftest turns it off; a user's environment does not)
    worker = start_worker(kafka_bootstrap, topics, "serve", "--serve", "--scorer-checkpoint", str(tiny_checkpoint),
                          "--exit-when-idle", "3", log=log, env={"LRSA_SCORE_ENABLED": "true"})
    code = wait_exit(worker, 400, log)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "tritonserver ready: grpc 127.0.0.1:" in text
    results = [json.loads(r.value) for r in read_all(kafka_bootstrap, topics["out"])]
    assert {r["post_id"] for r in results} == data.good_ids and len(results) == len(data.good_ids)
    assert all(r["scored"] is True for r in results)
    assert tritonservers() <= before  # the worker's own server stopped with it


def test_a_missing_scorer_fails_the_start_saying_how_to_get_one(kafka_bootstrap, kafka_topic, tmp_path,
                                                                tiny_checkpoint) -> None:
    topics = {"in": kafka_topic("noscorer-in", 1), "out": kafka_topic("noscorer-out", 1),
              "dlq": kafka_topic("noscorer-dlq", 1)}
    log = tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, "noscorer", "--scorer-url", "127.0.0.1:9", log=log,
                          env={"LRSA_SCORE_ENABLED": "true", "LRSA_SCORER_CHECKPOINT": str(tiny_checkpoint),
                               "LRSA_SCORER_STARTUP_TIMEOUT_S": "3"})
    code = wait_exit(worker, 120, log)
    text = log.read_text()
    assert code == 2, text[-3000:]
    assert "cannot start" in text and "`lrsa serve`" in text and "--no-score-enabled" in text


def test_serve_with_scoring_off_or_another_scorer_is_refused_in_one_line(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from streaming_helpers import REPO

    env = {**os.environ, "LRSA_SCORE_ENABLED": "true"}
    for extra in (["--no-score-enabled"], ["--scorer-url", "127.0.0.1:8001"]):
        done = subprocess.run([sys.executable, "-m", "lrsa_cli.main", "run", "--serve", *extra], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "--serve" in lines[0] and "drop one of them" in lines[0], done.stderr

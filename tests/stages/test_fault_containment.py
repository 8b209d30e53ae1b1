"""No input or set-up makes the worker crash, stall or hang: `lrsa run` as its own process against
the real broker and a real local Ray (stage doubles from tests/stage_doubles.py)."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from streaming_helpers import (ECHO_STAGE, committed_offsets, ids_of, make_dataset, produce, read_all, start_worker,
                               wait_exit, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.ray]


def topics_for(kafka_topic, name: str, partitions: int = 2) -> dict[str, str]:
    return {"in": kafka_topic(f"{name}-in", partitions), "out": kafka_topic(f"{name}-out", partitions),
            "dlq": kafka_topic(f"{name}-dlq", 1)}


def metric(log_text: str, name: str, **labels: str) -> float:
    port = int(re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", log_text).group(1))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_5000_level_nested_post_is_dead_lettered_and_the_rest_flow(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    data = make_dataset(200, 0, seed=4)
    nested = b'{"id": "deep", "text": "t", "meta": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    values = data.values[:100] + [(b"deep", nested)] + data.values[100:]
    topics = topics_for(kafka_topic, "deep", partitions=1)
    produce(kafka_bootstrap, topics["in"], values)
    log = tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, "deep", "--rationale-enabled", "--rationale-processor", ECHO_STAGE,
                          "--exit-when-idle", "2", log=log)
    assert wait_exit(worker, 120, log) == 0  # before the fix: the ingest actor died on RecursionError, for ever
    results, letters = read_all(kafka_bootstrap, topics["out"]), read_all(kafka_bootstrap, topics["dlq"])
    assert set(ids_of(results)) == data.good_ids and len(results) == 200
    assert list(ids_of(letters)) == ["deep"]
    error = json.loads(letters[0].value)["error"]
    assert error["reason"] == "invalid_json" and "nested too deeply" in error["message"]
    assert sum(committed_offsets(kafka_bootstrap, "deep").values()) == 201


def test_a_dead_letter_the_broker_refuses_is_reported_and_stop_keeps_its_grace(kafka_bootstrap, kafka_topic,
                                                                               tmp_path) -> None:
    """The dead-letter topic takes at most 2,000-byte records; a 12 KB post is dead-lettered
    (text_too_long) and its dead letter refused for good. The worker goes on, reports it, and a
    SIGTERM ends it within --stop-grace-s, the refused post's offset left uncommitted."""
    topics = {"in": kafka_topic("refuse-in", 1), "out": kafka_topic("refuse-out", 1),
              "dlq": f"refuse-dlq-{time.time_ns()}"}
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topics["dlq"], 1, 1, topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    data = make_dataset(50, 0, seed=6)
    big = json.dumps({"id": "big", "text": "x" * 12_000}).encode()
    produce(kafka_bootstrap, topics["in"], data.values[:20] + [(b"big", big)] + data.values[20:])
    log = tmp_path / "worker.log"
    grace = 10.0
    worker = start_worker(kafka_bootstrap, topics, "refuse", "--retry-initial-s", "0.2", "--retry-max-s", "1",
                          "--stop-grace-s", str(grace), log=log)
    wait_for(lambda: "refuses a record" in log.read_text(), 90, what="the refused dead letter to be reported")
    wait_for(lambda: metric(log.read_text(), "lrsa_send_refused_total", error="MessageSizeTooLargeError") > 0, 30,
             what="lrsa_send_refused_total")
    wait_for(lambda: len(read_all(kafka_bootstrap, topics["out"])) == 50, 60, what="the other posts' results")
    start = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = wait_exit(worker, 60, log)
    took = time.monotonic() - start
    assert took <= grace, f"stop took {took:.1f}s, grace {grace}s"
    assert code == 0
    text = log.read_text()
    assert f"refuses a record for {topics['dlq']}" in text and "MessageSizeTooLargeError" in text
    # the driver's own line; kafka-python's idempotent producer aborts the batches in flight with the
    # refused record too, so results sent in the same moment may be waiting for their re-send
    assert re.search(r"ingest 0 stopped with [1-9]\d* records the broker refused", text)
    assert sorted(ids_of(read_all(kafka_bootstrap, topics["dlq"]))) == []
    assert committed_offsets(kafka_bootstrap, "refuse").get(0, 0) <= 20  # never past the refused post (offset 20)
    print(f"stop took {took:.1f}s (grace {grace}s)")


def test_an_actor_asking_for_gpus_that_do_not_exist_fails_the_start_naming_the_setting(kafka_bootstrap, kafka_topic,
                                                                                       tmp_path) -> None:
    topics = topics_for(kafka_topic, "nogpu")
    log = tmp_path / "worker.log"
    start = time.monotonic()
    worker = start_worker(kafka_bootstrap, topics, "nogpu", "--rationale-enabled", "--rationale-processor", ECHO_STAGE,
                          "--rationale-num-gpus", "1", log=log)
    code = wait_exit(worker, 90, log)
    took = time.monotonic() - start
    assert code == 2
    assert "--rationale-num-gpus" in log.read_text() and "cannot start" in log.read_text()
    print(f"failed start reported after {took:.1f}s")


def test_a_score_stage_with_an_unreachable_url_fails_the_start_naming_it(kafka_bootstrap, kafka_topic, tmp_path,
                                                                         tiny_checkpoint) -> None:
    topics = topics_for(kafka_topic, "nourl")
    for url, words in (("127.0.0.1:9", "not reachable"), ("", "is empty")):
        log = tmp_path / f"worker-{url or 'empty'}.log"
        start = time.monotonic()
        worker = start_worker(kafka_bootstrap, topics, "nourl", "--score-enabled", "--actor-start-timeout-s", "60",
                              log=log, env={"LRSA_SCORER_URL": url, "LRSA_SCORER_CHECKPOINT": str(tiny_checkpoint),
                                            "LRSA_SCORER_STARTUP_TIMEOUT_S": "3"})
        code = wait_exit(worker, 90, log)
        took = time.monotonic() - start
        text = log.read_text()
        assert code == 2, text[-3000:]
        assert "LRSA_SCORER_URL" in text and words in text and "cannot start" in text
        assert took < 60  # the scorer's own 3 s deadline, not the 60 s actor start timeout
        print(f"url {url!r}: failed start reported after {took:.1f}s")


def test_a_pool_whose_new_actor_cannot_be_placed_keeps_working_and_reports_it(kafka_bootstrap, kafka_topic,
                                                                              tmp_path) -> None:
    """4 Ray CPUs: the ingest actor takes 0.5 and the first rationale actor 3, so the second
    one the pool grows under load can never be placed."""
    data = make_dataset(800, 0, seed=8)
    topics = topics_for(kafka_topic, "grow")
    produce(kafka_bootstrap, topics["in"], data.values)
    log = tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, "grow", "--rationale-enabled", "--rationale-processor", ECHO_STAGE,
                          "--rationale-num-cpus", "3", "--rationale-pool-max", "2", "--pool-grow-after-s", "1",
                          "--actor-start-timeout-s", "4", "--batch-size", "16", "--exit-when-idle", "2", log=log,
                          env={"LRSA_TEST_STAGE_DELAY_S": "0.03"})
    wait_for(lambda: "a new actor not started after 4s" in log.read_text(), 90, what="the unplaced actor reported")
    wait_for(lambda: metric(log.read_text(), "lrsa_stage_actor_failures_total", stage="rationale",
                            kind="not_started") >= 1, 30, what="lrsa_stage_actor_failures_total")
    assert metric(log.read_text(), "lrsa_stage_actors_unplaced", stage="rationale") == 1
    assert metric(log.read_text(), "lrsa_actor_pool_size", stage="rationale") == 1
    assert wait_exit(worker, 150, log) == 0
    results = read_all(kafka_bootstrap, topics["out"])
    assert set(ids_of(results)) == data.good_ids and len(results) == 800


def test_a_dead_stage_actor_leaves_its_pool_and_is_replaced(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    """The rationale actor's process exits on every batch until Ray's restarts are spent; the driver
    drops the dead actor, starts a replacement (pool min 1), and once the cause is gone every post
    has its result and none is dead-lettered."""
    die = tmp_path / "die"
    die.touch()
    data = make_dataset(100, 0, seed=10)
    topics = topics_for(kafka_topic, "dead", partitions=1)
    produce(kafka_bootstrap, topics["in"], data.values)
    log = tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, "dead", "--rationale-enabled", "--rationale-processor",
                          "stage_doubles:DyingProcessor", "--retry-initial-s", "0.2", "--retry-max-s", "1",
                          "--retry-budget-attempts", "100", "--retry-budget-s", "300", "--exit-when-idle", "2",
                          log=log, env={"LRSA_TEST_DIE_FILE": str(die)})
    wait_for(lambda: "an actor died for good" in log.read_text(), 120, what="the dead actor noticed")
    die.unlink()
    assert wait_exit(worker, 120, log) == 0
    text = log.read_text()
    assert "starting a replacement" in text and "new actor up" in text
    assert set(ids_of(read_all(kafka_bootstrap, topics["out"]))) == data.good_ids
    assert len(read_all(kafka_bootstrap, topics["dlq"])) == 0

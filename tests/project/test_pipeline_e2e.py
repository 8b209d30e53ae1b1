"""End to end against the real broker, with `lrsa run` as a separate process and a real local Ray."""

from __future__ import annotations

import json
import re

import pytest

from streaming_helpers import (ECHO_STAGE, end_offsets, ids_of, make_dataset, produce, read_all,
                               committed_offsets, start_worker, wait_exit, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.ray]


def topics_for(kafka_topic, name: str, partitions: int = 4) -> dict[str, str]:
    return {"in": kafka_topic(f"{name}-in", partitions), "out": kafka_topic(f"{name}-out", partitions),
            "dlq": kafka_topic(f"{name}-dlq", 1)}


@pytest.mark.slow
def test_10k_posts_500_bad_each_accounted_once(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    data = make_dataset(10_000, 500)
    topics = topics_for(kafka_topic, "e2e")
    produce(kafka_bootstrap, topics["in"], data.values)
    worker = start_worker(kafka_bootstrap, topics, "e2e", "--ingest-actors", "2", "--exit-when-idle", "3",
                          log=tmp_path / "worker.log")
    assert wait_exit(worker, 170, tmp_path / "worker.log") == 0

    results = read_all(kafka_bootstrap, topics["out"])
    letters = read_all(kafka_bootstrap, topics["dlq"])
    assert len(results) == 9_500 and len(letters) == 500
    result_ids, letter_ids = ids_of(results), ids_of(letters)
    assert set(result_ids) == data.good_ids and max(result_ids.values()) == 1  # no duplicates
    assert set(letter_ids) == data.bad_keys and max(letter_ids.values()) == 1
    reasons = {json.loads(r.value)["error"]["reason"] for r in letters}
    assert reasons == {"invalid_json", "schema_violation", "empty_text", "text_too_long",
                       "image_undecodable", "image_too_large"}
    sample = json.loads(results[0].value)
    assert sample["post_id"] == results[0].key.decode() and sample["aspects"] == []
    assert sample["scored"] is False  # contract v1.1: no score stage ran, not "no aspect found"
    assert sum(committed_offsets(kafka_bootstrap, "e2e").values()) == 10_000  # all committed at the end


def test_outage_of_a_stage_retries_and_commits_nothing(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    """TransientError is not bad input: nothing is dead-lettered or committed until the stage is back."""
    down = tmp_path / "down"
    down.touch()
    data = make_dataset(300, 0)
    topics = topics_for(kafka_topic, "outage", partitions=2)
    produce(kafka_bootstrap, topics["in"], data.values)
    worker = start_worker(kafka_bootstrap, topics, "outage", "--rationale-enabled",
                          "--rationale-processor", ECHO_STAGE, "--retry-initial-s", "0.2", "--retry-max-s", "1",
                          "--exit-when-idle", "2", log=tmp_path / "worker.log",
                          env={"LRSA_TEST_STAGE_DOWN_FILE": str(down)})
    try:
        wait_for(lambda: "retry 3 of a batch" in (tmp_path / "worker.log").read_text(), 90,
                 what="the worker to retry the failing stage")
        assert end_offsets(kafka_bootstrap, topics["out"]) == 0
        assert end_offsets(kafka_bootstrap, topics["dlq"]) == 0
        assert committed_offsets(kafka_bootstrap, "outage") == {}
    finally:
        down.unlink()
    assert wait_exit(worker, 90, tmp_path / "worker.log") == 0
    results = read_all(kafka_bootstrap, topics["out"])
    assert set(ids_of(results)) == data.good_ids and len(results) == 300
    assert json.loads(results[0].value)["rationale"].startswith("echo: ")
    assert json.loads(results[0].value)["model"] == {"rationale": "echo-test"}


@pytest.mark.slow
def test_stop_during_an_outage_leaves_work_uncommitted_for_the_restart(kafka_bootstrap, kafka_topic,
                                                                        tmp_path) -> None:
    import signal

    down = tmp_path / "down"
    down.touch()
    data = make_dataset(200, 10, seed=9)
    topics = topics_for(kafka_topic, "stop-outage", partitions=2)
    produce(kafka_bootstrap, topics["in"], data.values)
    stage = ["--rationale-enabled", "--rationale-processor", ECHO_STAGE, "--retry-initial-s", "0.2",
             "--retry-max-s", "1", "--drain-timeout-s", "3"]
    log = tmp_path / "worker.log"
    env = {"LRSA_TEST_STAGE_DOWN_FILE": str(down)}
    worker = start_worker(kafka_bootstrap, topics, "stop-outage", *stage, log=log, env=env)
    wait_for(lambda: "retry 2 of a batch" in log.read_text(), 90, what="the failing stage to be retried")
    worker.send_signal(signal.SIGTERM)
    assert wait_exit(worker, 60, log) == 0
    # the driver's own line (an actor's lines can be cut off by the shutdown)
    assert re.search(r"stopped with [1-9]\d* posts unfinished after the drain timeout", log.read_text())
    assert end_offsets(kafka_bootstrap, topics["out"]) == 0
    letters_before = end_offsets(kafka_bootstrap, topics["dlq"])  # bad input is dead-lettered regardless

    down.unlink()
    again = start_worker(kafka_bootstrap, topics, "stop-outage", *stage, "--exit-when-idle", "2", log=log, env=env)
    assert wait_exit(again, 90, log) == 0
    assert set(ids_of(read_all(kafka_bootstrap, topics["out"]))) == data.good_ids
    assert set(ids_of(read_all(kafka_bootstrap, topics["dlq"]))) == data.bad_keys
    assert letters_before <= 10

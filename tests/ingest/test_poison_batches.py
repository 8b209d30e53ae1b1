"""A post a stage always fails on is found by bisection and dead-lettered (`stage_failed`, with the
stage's error); the rest of its batch and its partition flow on. Real broker, real Ray, `lrsa run`
as its own process, a stage double that fails every batch holding the poison post."""

from __future__ import annotations

import json
import re

import pytest

from streaming_helpers import (committed_offsets, end_offsets, ids_of, make_dataset, produce, read_all, start_worker,
                               wait_exit, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.ray]

POISON_STAGE = "stage_doubles:PoisonProcessor"


def handed_over_mid_run(log: str) -> bool:
    """kafka-python's usual rebalance right after the start handed the partition over mid-bisection:
    the posts from the unfinished poison on are read again (at-least-once repeats, none lost)."""
    return re.search(r"handed over \d+ partition\(s\) in [\d.]+s \([1-9]\d* posts left to be read again\)",
                     log) is not None


def run_with_poison(kafka_bootstrap, kafka_topic, tmp_path, name: str, n: int, poison_at: int, kind: str,
                    *extra: str):
    data = make_dataset(n, 0, seed=5)
    poison = f"post-{poison_at}"
    topics = {"in": kafka_topic(f"{name}-in", 1), "out": kafka_topic(f"{name}-out", 1),
              "dlq": kafka_topic(f"{name}-dlq", 1)}
    log, calls = tmp_path / "worker.log", tmp_path / "calls.log"
    warm_up = (b"warm-up", json.dumps({"id": "warm-up", "text": "the worker is up"}).encode())
    produce(kafka_bootstrap, topics["in"], [warm_up])
    worker = start_worker(kafka_bootstrap, topics, name, "--rationale-enabled", "--rationale-processor", POISON_STAGE,
                          "--batch-size", "32", "--batch-max-wait-ms", "300", "--exit-when-idle", "3", *extra,
                          log=log, env={"LRSA_TEST_POISON_IDS": poison, "LRSA_TEST_POISON_KIND": kind,
                                        "LRSA_TEST_POISON_LOG": str(calls)})
    # the posts come once the worker is steady: a rebalance right after the start (usual with
    # kafka-python) would hand the partition over mid-bisection and redo it (at-least-once duplicates)
    wait_for(lambda: end_offsets(kafka_bootstrap, topics["out"]) >= 1, 90, what="the warm-up result")
    calls.write_text("")
    produce(kafka_bootstrap, topics["in"], data.values)
    assert wait_exit(worker, 150, log) == 0
    results, letters = read_all(kafka_bootstrap, topics["out"]), read_all(kafka_bootstrap, topics["dlq"])
    results = [r for r in results if r.key != b"warm-up"]
    assert set(ids_of(results)) == data.good_ids - {poison}
    assert set(ids_of(letters)) == {poison}
    if handed_over_mid_run(log.read_text()):
        print("a hand-over left work to be read again: repeats allowed")
    else:
        assert len(results) == n - 1 and len(letters) == 1
    letter = json.loads(letters[0].value)
    original = json.loads(__import__("base64").b64decode(letter["original_b64"]))
    assert original["id"] == poison  # the original bytes, as consumed
    assert letter["error"]["reason"] == "stage_failed"
    assert letter["source"]["offset"] == poison_at + 1  # after the warm-up post
    assert sum(committed_offsets(kafka_bootstrap, name).values()) == n + 1  # every offset, the poison's too
    fails = [line for line in calls.read_text().splitlines() if line.endswith("fail")]
    return results, letters[0], letter, fails, log.read_text()


def test_non_retryable_poison_in_a_batch_of_32_is_isolated_at_once(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    _, _, letter, fails, log = run_with_poison(kafka_bootstrap, kafka_topic, tmp_path, "poison-nr", 32, 13,
                                               "nonretryable")
    assert letter["error"]["error_class"] == "NonRetryable"
    assert "cannot process post post-13" in letter["error"]["message"]
    assert "stage rationale" in letter["error"]["message"]
    # bisection, no retries: 32 -> 16 -> 8 -> 4 -> 2 -> 1 is 6 failing calls for a full first batch
    assert 1 <= len(fails) <= (14 if handed_over_mid_run(log) else 7), fails
    assert "retry 1 of a batch" not in log


def test_transient_poison_exhausts_the_budget_and_the_partition_keeps_flowing(kafka_bootstrap, kafka_topic,
                                                                              tmp_path) -> None:
    results, letter_record, letter, fails, log = run_with_poison(
        kafka_bootstrap, kafka_topic, tmp_path, "poison-tr", 160, 5, "transient",
        "--retry-budget-attempts", "3", "--retry-budget-s", "30", "--retry-initial-s", "1", "--retry-max-s", "2")
    assert letter["error"]["error_class"] == "TransientError"
    assert "flaky on post post-5" in letter["error"]["message"]
    # the single post was given its whole budget (3 attempts) before it was dead-lettered
    assert "fails alone" in log and "retry 2 of a batch of 1 " in log
    singles = len([f for f in fails if f.startswith("1 ")])
    assert singles == 3 or (handed_over_mid_run(log) and singles >= 3), fails
    # while the poison post waited for its retries, the later batches of its partition went through:
    # results of posts after it were acknowledged before its dead letter was written
    later = [r for r in results if int(r.key.decode().split("-")[1]) >= 64]
    assert later and sum(r.timestamp < letter_record.timestamp for r in later) >= len(later) // 2

"""kill -9 mid-run and SIGTERM mid-run, then restart: nothing lost, duplicates only where allowed."""

from __future__ import annotations

import os
import signal

import pytest

from streaming_helpers import (ECHO_STAGE, committed_offsets, end_offsets, ids_of, kill_tree, make_dataset,
                               produce, read_all, start_worker, wait_exit, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]

SLOW_STAGE = ["--rationale-enabled", "--rationale-processor", ECHO_STAGE, "--batch-size", "50",
              "--commit-interval-ms", "300"]
SLOW_ENV = {"LRSA_TEST_STAGE_DELAY_S": "0.0005"}  # ~5 s of work for 10k posts: time to crash mid-run


def run_interrupted(kafka_bootstrap, kafka_topic, tmp_path, name: str, sig: int, *extra: str,
                    read_committed: bool = False):
    data = make_dataset(10_000, 200, seed=3)
    topics = {"in": kafka_topic(f"{name}-in", 4), "out": kafka_topic(f"{name}-out", 4),
              "dlq": kafka_topic(f"{name}-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    log = tmp_path / "worker.log"
    first = start_worker(kafka_bootstrap, topics, name, *SLOW_STAGE, *extra, log=log, env=SLOW_ENV)
    wait_for(lambda: end_offsets(kafka_bootstrap, topics["out"]) >= 3_000, 120, 0.2,
             what="3,000 results before interrupting")
    if sig == signal.SIGKILL:
        kill_tree(first.pid)
    elif sig == signal.SIGINT:  # Ctrl-C in a terminal: the whole foreground process group gets it
        os.killpg(first.pid, signal.SIGINT)
        assert wait_exit(first, 60, log) == 0
    else:
        first.send_signal(sig)
        assert wait_exit(first, 60, log) == 0
    committed = committed_offsets(kafka_bootstrap, name)
    assert 0 < sum(committed.values()) < 10_000, "interrupt landed before any commit or after the end"

    second = start_worker(kafka_bootstrap, topics, name, *SLOW_STAGE, *extra, "--exit-when-idle", "3",
                          log=log, env=SLOW_ENV)
    assert wait_exit(second, 150, log) == 0
    results = read_all(kafka_bootstrap, topics["out"], read_committed=read_committed)
    letters = read_all(kafka_bootstrap, topics["dlq"], read_committed=read_committed)
    result_ids, letter_ids = ids_of(results), ids_of(letters)
    assert set(result_ids) == data.good_ids and set(letter_ids) == data.bad_keys  # nothing lost
    return data, results, letters, committed


def duplicates(records) -> list:
    seen, dups = set(), []
    for r in records:
        (dups.append(r) if r.key in seen else seen.add(r.key))
    return dups


def test_kill_9_then_restart_loses_nothing(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    import json

    data, results, letters, committed = run_interrupted(kafka_bootstrap, kafka_topic, tmp_path, "crash",
                                                        signal.SIGKILL)
    dups = duplicates(results) + duplicates(letters)
    for r in dups:  # a duplicate is only ever an output of an offset the crash left uncommitted
        source = json.loads(r.value)["source"]
        assert source["offset"] >= committed.get(source["partition"], 0)
    window = 10_000 - sum(committed.values())
    print(f"\nkill -9 at {sum(committed.values())} committed: {len(dups)} duplicates "
          f"(uncommitted window {window} posts)")
    assert len(dups) <= window


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c-to-group"])
def test_graceful_stop_drains_and_commits_so_restart_has_no_duplicates(kafka_bootstrap, kafka_topic, tmp_path,
                                                                      sig) -> None:
    _, results, letters, _ = run_interrupted(kafka_bootstrap, kafka_topic, tmp_path, f"stop-{sig.name}", sig)
    assert duplicates(results) == [] and duplicates(letters) == []
    assert "draining in-flight work" in (tmp_path / "worker.log").read_text()

"""A lost ingest actor is replaced (issue 22): kill -9 one of two ingest actors' processes mid-stream;
the driver starts a replacement (logged, counted in lrsa_ingest_actor_replacements_total), the
group rebalances, and every post ends as a result or dead letter with the worker exiting 0
(duplicates only from the lost actor's uncommitted window: at-least-once). Both delivery modes:
exactly-once reads read_committed and allows no duplicate."""

from __future__ import annotations

import signal

import psutil
import pytest

from streaming_helpers import (ECHO_STAGE, end_offsets, make_dataset, produce, read_outcome, start_worker, wait_exit,
                               wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.ray]


def ingest_actor_pids(worker_pid: int) -> list[int]:
    """The worker's ingest actor processes (Ray titles them `ray::IngestActor...`)."""
    root = psutil.Process(worker_pid)
    out = []
    for p in root.children(recursive=True):
        try:
            if "ray::IngestActor" in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_a_killed_ingest_actor_is_replaced_and_nothing_is_lost(kafka_bootstrap, kafka_topic, tmp_path, mode) -> None:
    name = f"ingest-lost-{mode}"
    data = make_dataset(6_000, 60, seed=9)
    topics = {"in": kafka_topic(f"{name}-in", 4), "out": kafka_topic(f"{name}-out", 4),
              "dlq": kafka_topic(f"{name}-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    log = tmp_path / "worker.log"
    extra = ["--exactly-once"] if mode == "exactly-once" else []
    worker = start_worker(kafka_bootstrap, topics, name, "--ingest-actors", "2", "--rationale-enabled",
                          "--rationale-processor", ECHO_STAGE, "--batch-size", "50", "--commit-interval-ms", "300",
                          "--exit-when-idle", "5", *extra, log=log, env={"LRSA_TEST_STAGE_DELAY_S": "0.002"})
    try:
        wait_for(lambda: end_offsets(kafka_bootstrap, topics["out"]) >= 800, 150, 0.2, what="800 results")
        pids = ingest_actor_pids(worker.pid)
        assert len(pids) == 2, pids
        psutil.Process(pids[0]).send_signal(signal.SIGKILL)
        assert wait_exit(worker, 240, log) == 0, log.read_text()[-4000:]
    finally:
        if worker.poll() is None:
            worker.kill()
    text = log.read_text(errors="replace")
    assert "starting a replacement ingest actor" in text
    committed = mode == "exactly-once"
    results, letters, dups = read_outcome(kafka_bootstrap, topics, data, read_committed=committed)
    print(f"\n{mode}: ingest actor killed; {len(results)} results, {dups} duplicates")
    if committed:
        assert dups == 0
    else:
        assert dups <= len(data.values) // 2  # only the lost actor's uncommitted window is redone


def test_a_stuck_ingest_actor_is_replaced(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    """SIGSTOP one of two ingest actors (a process stuck for good: it answers nothing, its loop does
    not tick): after --ingest-stall-s the driver ends and replaces it, and the run finishes (exit 0)
    with nothing lost. Without the watchdog the stop at the end would wait for it and fail (exit 1)."""
    name = "ingest-stuck"
    data = make_dataset(4_000, 40, seed=11)
    topics = {"in": kafka_topic(f"{name}-in", 4), "out": kafka_topic(f"{name}-out", 4),
              "dlq": kafka_topic(f"{name}-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    log = tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, name, "--ingest-actors", "2", "--rationale-enabled",
                          "--rationale-processor", ECHO_STAGE, "--batch-size", "50", "--commit-interval-ms", "300",
                          "--exit-when-idle", "5", "--ingest-stall-s", "20", log=log,
                          env={"LRSA_TEST_STAGE_DELAY_S": "0.002"})
    stuck = None
    try:
        wait_for(lambda: end_offsets(kafka_bootstrap, topics["out"]) >= 600, 150, 0.2, what="600 results")
        pids = ingest_actor_pids(worker.pid)
        assert len(pids) == 2, pids
        stuck = psutil.Process(pids[0])
        stuck.send_signal(signal.SIGSTOP)
        assert wait_exit(worker, 240, log) == 0, log.read_text()[-4000:]
    finally:
        if worker.poll() is None:
            worker.kill()
        if stuck is not None and stuck.is_running():
            stuck.send_signal(signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert "stalled" in text and "starting a replacement ingest actor" in text, text[-3000:]
    read_outcome(kafka_bootstrap, topics, data)  # asserts nothing lost

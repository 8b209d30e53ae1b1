"""Must show 2 (scorer level): tritonserver dies mid-stream and comes back; every post gets exactly
one result, the outage raises TransientError (never a dead letter) and shows in the metrics.
Plus the failure-handling pieces on their own: circuit breaker, backoff, timeouts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from lrsa.schemas import Post, SourceRef
from lrsa.backoff import Backoff
from workers.stages.circuit import CircuitBreaker, CircuitState, call_with_retries
from workers.stages.score import ScoreProcessor, ScorerSettings
from workers.stages.api import TransientError, WorkItem


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _batch(start: int, size: int) -> list[WorkItem]:
    return [WorkItem(post=Post(id=f"p{i}", text=f"Post {i}: the Yankees won again in New York #{i}"),
                     source=SourceRef(topic="posts", partition=0, offset=i)) for i in range(start, start + size)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_threshold_and_half_opens_after_reset() -> None:
    clock, states = FakeClock(), []
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=5, clock=clock, on_change=states.append)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.closed and breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.open and not breaker.allow()
    clock.now = 5.1
    assert breaker.allow() and breaker.state is CircuitState.half_open
    assert not breaker.allow()  # one trial call at a time
    breaker.record_failure()  # the trial failed: open again, for another reset period
    assert breaker.state is CircuitState.open and not breaker.allow()
    clock.now = 10.3
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.closed
    assert states == [CircuitState.open, CircuitState.half_open, CircuitState.open,
                      CircuitState.half_open, CircuitState.closed]


def test_retries_back_off_exponentially_with_jitter_and_give_up() -> None:
    delays, calls = [], []

    def failing() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        call_with_retries(failing, retries=4, backoff=Backoff(initial_s=1, max_s=3), retryable=lambda e: True,
                          sleep=delays.append)
    assert len(calls) == 5 and len(delays) == 4
    assert all(0 <= d <= cap for d, cap in zip(delays, [1, 2, 3, 3]))
    assert len(set(delays)) > 1  # jittered
    with pytest.raises(ValueError):  # not retryable: raised at once
        call_with_retries(lambda: int("x"), retries=4, backoff=Backoff(), retryable=lambda e: False,
                          sleep=delays.append)
    assert len(delays) == 4


@pytest.mark.triton
def test_request_timeout_is_a_transient_failure(triton_server, tiny_checkpoint: Path) -> None:
    scorer = ScoreProcessor(ScorerSettings(url=triton_server.grpc_url, checkpoint=tiny_checkpoint,
                                           timeout_s=1e-4, retries=1, backoff_base_s=0.01))
    before = _metric("lrsa_scorer_failures_total", kind="timeout")
    try:
        with pytest.raises(TransientError, match="timeout"):
            scorer.process(_batch(0, 8))
    finally:
        scorer.close()
    assert _metric("lrsa_scorer_failures_total", kind="timeout") == before + 2  # first try + 1 retry


@pytest.mark.triton
@pytest.mark.slow
def test_outage_mid_stream_every_post_gets_exactly_one_result(start_triton, tiny_checkpoint: Path) -> None:
    server = start_triton()
    scorer = ScoreProcessor(ScorerSettings(url=server.grpc_url, checkpoint=tiny_checkpoint, timeout_s=2,
                                           retries=1, backoff_base_s=0.05, circuit_failures=2,
                                           circuit_reset_s=0.5, request_batch_size=4))
    before = {k: _metric("lrsa_scorer_failures_total", kind=k) for k in ("unavailable", "circuit_open")}
    results: dict[str, int] = {}
    transient_errors, states_seen, health_seen, restarter = 0, set(), set(), None
    try:
        for b in range(12):
            batch = _batch(b * 8, 8)
            if b == 4:  # crash the server mid-stream; bring it back a little later
                server.kill()
                restarter = threading.Timer(1.0, server.start)
                restarter.start()
            while True:  # what the pipeline does with a TransientError: wait, retry, no commit
                try:
                    done = scorer.process(batch)
                    break
                except TransientError:
                    transient_errors += 1
                    states_seen.add(_metric("lrsa_scorer_circuit_state"))
                    health_seen.add(scorer.healthy())
                    time.sleep(0.2)
            for item in done:
                assert item.aspects is not None
                results[item.post.id] = results.get(item.post.id, 0) + 1
    finally:
        if restarter:
            restarter.join()
        scorer.close()
    assert results == {f"p{i}": 1 for i in range(96)}
    assert transient_errors > 0 and False in health_seen
    assert CircuitState.open in states_seen  # the outage is visible as an open circuit ...
    assert _metric("lrsa_scorer_failures_total", kind="unavailable") > before["unavailable"]  # ... and failures
    assert _metric("lrsa_scorer_failures_total", kind="circuit_open") > before["circuit_open"]
    assert _metric("lrsa_scorer_circuit_state") == CircuitState.closed  # and recovered
    assert scorer.healthy()


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.kafka
@pytest.mark.ray
def test_triton_outage_in_the_pipeline_loses_nothing(kafka_bootstrap, kafka_topic, start_triton,
                                                     tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`lrsa run` with the real score stage: tritonserver is killed mid-stream and restarted.
    Every good post gets exactly one result, only the bad posts are dead-lettered, and the
    outage shows in the worker's metrics as transient score-stage failures and retries."""
    import json
    import re
    import urllib.request

    from streaming_helpers import (end_offsets, ids_of, kill_tree, make_dataset, produce, read_all, start_worker,
                                   wait_exit, wait_for)

    server = start_triton()
    data = make_dataset(400, 20, seed=3)
    topics = {"in": kafka_topic("tfault-in", 2), "out": kafka_topic("tfault-out", 2),
              "dlq": kafka_topic("tfault-dlq", 1)}
    first, second = data.values[:200], data.values[200:]
    produce(kafka_bootstrap, topics["in"], first)
    log = tmp_path / "worker.log"
    env = {"LRSA_SCORER_URL": server.grpc_url, "LRSA_SCORER_CHECKPOINT": str(tiny_checkpoint),
           "LRSA_SCORER_TIMEOUT_S": "5", "LRSA_SCORER_RETRIES": "1", "LRSA_SCORER_BACKOFF_BASE_S": "0.05",
           "LRSA_SCORER_CIRCUIT_RESET_S": "0.5"}
    worker = start_worker(kafka_bootstrap, topics, "tfault", "--score-enabled", "--retry-initial-s", "0.2",
                          "--retry-max-s", "1", "--exit-when-idle", "3", log=log, env=env)
    try:
        wait_for(lambda: end_offsets(kafka_bootstrap, topics["out"]) > 0, 120, what="the first results")
        server.kill()  # mid-stream: the rest of the first half and all of the second are still to come
        produce(kafka_bootstrap, topics["in"], second)
        wait_for(lambda: "stage score: " in log.read_text() and "retry 3 of a batch" in log.read_text(), 60,
                 what="the worker to retry the score stage")
        port = int(re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", log.read_text()).group(1))

        def score_failures() -> float:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("lrsa_stage_errors_total{") and 'stage="score"' in line
                       and 'kind="transient"' in line)

        wait_for(lambda: score_failures() > 0, 30, what="the outage in the worker's metrics")
        # ... and in the scorer's own metrics, served by the score actor
        actor_port = int(re.search(r"stage score actors' own /metrics on 127\.0\.0\.1 ports \[(\d+)",
                                   log.read_text()).group(1))
        scorer_metrics = urllib.request.urlopen(f"http://127.0.0.1:{actor_port}/metrics", timeout=5).read().decode()
        unavailable = re.search(r'lrsa_scorer_failures_total\{kind="unavailable"\} (\S+)', scorer_metrics)
        assert unavailable and float(unavailable.group(1)) > 0
        assert re.search(r"lrsa_scorer_circuit_state (\S+)", scorer_metrics)
        server.start()
        assert wait_exit(worker, 180, log) == 0
    finally:
        if worker.poll() is None:
            kill_tree(worker.pid)
    results, letters = read_all(kafka_bootstrap, topics["out"]), read_all(kafka_bootstrap, topics["dlq"])
    result_ids = ids_of(results)
    assert set(result_ids) == data.good_ids and max(result_ids.values()) == 1
    assert set(ids_of(letters)) == data.bad_keys  # no dead letter caused by the outage
    sample = json.loads(results[0].value)
    assert sample["model"]["slm"] == "triton:lrsa_fused/latest" and isinstance(sample["aspects"], list)

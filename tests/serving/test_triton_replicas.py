"""Triton replicas (issue 22): the scorer takes several Triton URLs, sends batches round-robin over
them, and when one server is killed mid-stream its batches go to the other: every post gets exactly
one result, no batch fails, and the failover shows in the metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from lrsa.schemas import Post, SourceRef
from workers.stages.score import ScoreProcessor, ScorerSettings
from workers.stages.api import WorkItem

pytestmark = [pytest.mark.triton]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _batch(start: int, size: int) -> list[WorkItem]:
    return [WorkItem(post=Post(id=f"r{i}", text=f"Post {i}: the Yankees won again in New York #{i}"),
                     source=SourceRef(topic="posts", partition=0, offset=i)) for i in range(start, start + size)]


def test_batches_balance_over_replicas_and_fail_over_when_one_dies(start_triton, tiny_checkpoint: Path) -> None:
    a, b = start_triton(), start_triton()
    scorer = ScoreProcessor(ScorerSettings(url=f"{a.grpc_url}, {b.grpc_url}", checkpoint=tiny_checkpoint,
                                           timeout_s=2, retries=1, backoff_base_s=0.05, circuit_failures=2,
                                           circuit_reset_s=30, request_batch_size=4))
    ok = lambda url: _metric("lrsa_scorer_endpoint_batches_total", url=url, outcome="ok")  # noqa: E731
    before = {"a": ok(a.grpc_url), "b": ok(b.grpc_url), "failovers": _metric("lrsa_scorer_failovers_total"),
              "a_failed": _metric("lrsa_scorer_endpoint_batches_total", url=a.grpc_url, outcome="failed")}
    results: dict[str, int] = {}
    try:
        for n in range(12):
            if n == 4:
                assert ok(a.grpc_url) - before["a"] == 2 and ok(b.grpc_url) - before["b"] == 2  # round-robin
                a.kill()  # mid-stream, for good
                a_at_kill = ok(a.grpc_url)
            for item in scorer.process(_batch(n * 8, 8)):  # never raises: the other replica takes it
                assert item.aspects is not None
                results[item.post.id] = results.get(item.post.id, 0) + 1
        assert scorer.healthy()  # one replica is up
    finally:
        scorer.close()
    assert results == {f"r{i}": 1 for i in range(96)}
    assert ok(a.grpc_url) == a_at_kill and ok(b.grpc_url) - before["b"] == 10  # after the kill: all on b
    assert _metric("lrsa_scorer_failovers_total") > before["failovers"]
    assert _metric("lrsa_scorer_endpoint_batches_total", url=a.grpc_url, outcome="failed") > before["a_failed"]


def test_the_scorer_starts_while_one_replica_is_down(start_triton, tiny_checkpoint: Path) -> None:
    from lrsa.ports import free_ports

    up = start_triton()
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    scorer = ScoreProcessor(ScorerSettings(url=f"{dead},{up.grpc_url}", checkpoint=tiny_checkpoint, timeout_s=2,
                                           retries=0, circuit_failures=1, circuit_reset_s=30, startup_timeout_s=20))
    try:
        assert len(scorer.process(_batch(1000, 8))) == 8
        assert len(scorer.process(_batch(1008, 8))) == 8
    finally:
        scorer.close()

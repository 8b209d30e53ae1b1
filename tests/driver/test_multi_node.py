"""`lrsa run --ray-address` on a real multi-node Ray cluster on loopback (issue 22): a head node
for the ingest actors (custom resource ingest_nodes) and two worker nodes for the stage pool
(stage_nodes, pinned with --rationale-resources). A worker node holding stage actors is killed
mid-stream (its whole process tree: raylet, workers); the actors are replaced on the surviving
node, their in-flight batches are redone, and every post ends as one result or dead letter
(at-least-once: duplicates bounded)."""

from __future__ import annotations

import pytest

from fixtures_ray import LoopbackRayCluster
from streaming_helpers import (ECHO_STAGE, end_offsets, make_dataset, produce, read_outcome, start_worker, wait_exit,
                               wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def stage_slots_used() -> dict[str, float]:
    """node id -> stage_nodes in use, from the cluster's per-node totals and availabilities."""
    import ray._private.state as state

    total, free = state.state.total_resources_per_node(), state.state.available_resources_per_node()
    return {node: total[node].get("stage_nodes", 0) - free.get(node, {}).get("stage_nodes", 0)
            for node in total if "stage_nodes" in total[node]}


def test_worker_node_lost_mid_stream_loses_nothing(kafka_bootstrap, kafka_topic, tmp_path, monkeypatch) -> None:
    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    delay = {"LRSA_TEST_STAGE_DELAY_S": "0.004"}  # read by the echo stage on the nodes: ~8 s of work
    cluster = LoopbackRayCluster(tmp_path)
    data = make_dataset(2_000, 40, seed=5)
    topics = {"in": kafka_topic("mn-in", 4), "out": kafka_topic("mn-out", 4), "dlq": kafka_topic("mn-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], data.values)
    log = tmp_path / "worker.log"
    try:
        cluster.start_head(num_cpus=2, resources={"ingest_nodes": 4}, **delay)
        cluster.connect()
        for i, name in enumerate(("w1", "w2"), start=2):  # one at a time: registration is slow on 2 cores
            cluster.add_node(name, num_cpus=2, resources={"stage_nodes": 2}, **delay)
            cluster.wait_nodes(i, timeout_s=120)
        worker = start_worker(kafka_bootstrap, topics, "multi-node", "--ray-address", cluster.address,
                              "--ingest-actors", "2", "--ingest-resources", "ingest_nodes=1",
                              "--rationale-enabled", "--rationale-processor", ECHO_STAGE,
                              "--rationale-pool-min", "2", "--rationale-pool-max", "2",
                              "--rationale-resources", "stage_nodes=1", "--rationale-num-cpus", "0.5",
                              "--batch-size", "50", "--commit-interval-ms", "300", "--exit-when-idle", "5",
                              "--actor-start-timeout-s", "60", log=log)
        wait_for(lambda: end_offsets(kafka_bootstrap, topics["out"]) >= 300, 180, 0.2, what="300 results")
        used = stage_slots_used()
        holders = [node for node, n in used.items() if n > 0]
        assert holders, f"no stage actor on a worker node: {used}"
        # which `ray start` process runs that node: the worker nodes are w1 and w2, in start order
        worker_nodes = [n["NodeID"] for n in ray.nodes() if "stage_nodes" in n["Resources"]]
        assert len(worker_nodes) == 2
        victim_id = max(holders, key=used.get)
        victim = _node_name(cluster, victim_id)
        cluster.kill(victim)
        survivor = next(n for n in worker_nodes if n != victim_id)
        # the stage actors come back on the surviving node (Ray restarts them there, or the pool replaces them)
        wait_for(lambda: stage_slots_used().get(survivor, 0) >= 1 and
                 stage_slots_used().get(survivor, 0) + stage_slots_used().get(victim_id, 0) >= 1, 120, 0.5,
                 what="stage actors on the surviving node")
        assert wait_exit(worker, 300, log) == 0, log.read_text()[-4000:]
    finally:
        ray.shutdown()
        cluster.stop()
    text = log.read_text(errors="replace")
    results, letters, dups = read_outcome(kafka_bootstrap, topics, data)
    print(f"\nnode {victim} killed with {used[victim_id]:g} stage actor(s); {len(results)} results, "
          f"{dups} duplicates; actors replaced: {text.count('starting a replacement')}")
    assert "actor_died" in text  # the lost node's in-flight batches failed and were redone
    assert dups <= len(data.values) // 2  # at-least-once: only the lost node's in-flight batches are redone


def _node_name(cluster: LoopbackRayCluster, node_id: str) -> str:
    """The name the test gave the node with this Ray node id: the one whose raylet runs with --node_id=<it>."""
    import psutil

    for name, proc in cluster.nodes.items():
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if f"--node_id={node_id}" in child.cmdline():
                    return name
            except psutil.Error:
                continue
    raise AssertionError(f"no raylet of node {node_id} among the test's nodes")

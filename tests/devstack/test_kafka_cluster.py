"""A 3-broker KRaft cluster on loopback (issue 22): topics replicated 3 times with
min.insync.replicas 2; one broker SIGKILLed mid-stream and brought back; nothing lost in either
delivery mode (exactly-once: zero duplicates read read_committed)."""

from __future__ import annotations

import os
import subprocess
import time
import sys

import pytest

from lrsa import stack_env

from streaming_helpers import (ECHO_STAGE, end_offsets, make_dataset, produce, read_outcome, start_worker, wait_exit,
                               wait_for)
from workers.devstack.kafka_cluster import KafkaCluster
from workers.devstack.kafka_stack import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def results_so_far(bootstrap: str, topic: str) -> int:
    """The output's end offsets; 0 when this probe's own client hit the dead broker (it does not retry)."""
    from kafka.errors import KafkaError

    try:
        return end_offsets(bootstrap, topic)
    except KafkaError:
        return 0


def group_coordinator(bootstrap: str, group: str) -> int:
    """The broker (node id) coordinating `group`: FindCoordinator, which the broker answers from
    the group id's hash, so it is known before the group exists."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        return admin._manager.run(admin._find_coordinator_id, group)  # no public call in kafka-python
    finally:
        admin.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kafka3")
    env_file = folder / "stack.env"
    up = subprocess.run([sys.executable, "-m", "lrsa_cli.main", "stack", "up", "--brokers", "3", "--kafka-dir",
                         str(folder), "--kafka-heap", "256m", "--kafka-topics", "posts"],
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, "LRSA_STACK_ENV": str(env_file)})
    c = KafkaCluster(folder)  # the running cluster, from its data dir
    if up.returncode:
        c.down(timeout_s=5)
        pytest.fail(f"lrsa stack up --brokers 3 failed: {up.stderr[-3000:]}")
    assert up.stdout.strip() == c.bootstrap and len(c.running()) == 3
    # the address for every other command (lrsa/stack_env.py), and stderr says where it is
    assert stack_env.read_bootstrap(env_file) == c.bootstrap and str(env_file) in up.stderr
    yield c
    c.down(timeout_s=10)


def test_topics_are_replicated_with_a_majority_in_sync(cluster) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap.split(","))
    try:  # "posts" was made by `lrsa stack up`
        partitions = admin.describe_topics(["posts"])[0]["partitions"]
        assert all(sorted(p["replica_nodes"]) == [1, 2, 3] for p in partitions)
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "posts")])
        text = str(configs)
        assert "min.insync.replicas" in text and "20971520" in text  # max.message.bytes of the clients
    finally:
        admin.close()


def test_the_group_lag_probe_finds_the_new_coordinator_after_its_broker_dies(cluster) -> None:
    """The root cause of the broker-kill hang (issue 31 item 2): kafka-python's admin client keeps a
    group's coordinator id for life, so after that broker died `lrsa run --exit-when-idle` asked the
    dead node for the group's offsets forever and never exited, its work long done. GroupLag now
    drops its admin client after a failure; the next call finds the new coordinator."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from workers.config import KafkaClientSettings
    from workers.kafka_clients.clients import GroupLag

    topic, group = "k3-lag-probe", "k3-lag-probe-group"
    create_topics(cluster.bootstrap, [topic], 2, cluster.replication)
    produce(cluster.bootstrap, topic, [(str(i).encode(), b"{}") for i in range(10)])
    member = KafkaConsumer(bootstrap_servers=cluster.bootstrap.split(","), group_id=group, enable_auto_commit=False)
    try:  # partition 0 read to its end, partition 1 not at all
        ends = member.end_offsets([TopicPartition(topic, p) for p in (0, 1)])
        member.commit({TopicPartition(topic, p): OffsetAndMetadata(ends[TopicPartition(topic, 0)] if p == 0 else 0,
                                                                   "", -1) for p in (0, 1)})
    finally:
        member.close()
    probe = GroupLag(KafkaClientSettings(bootstrap_servers=cluster.bootstrap), topic, group)
    try:
        before = probe.lag()  # the admin client now holds the group's coordinator
        assert before[0] == 0 and before[1] > 0
        victim = group_coordinator(cluster.bootstrap, group)
        cluster.kill(victim)
        # The fix under test: the probe answers again (before it, every call failed for good).
        # What the new coordinator answers is Kafka's: two CI runs on a loaded machine got the
        # group without its commits for the whole 90 s after the fail-over (lag {0: 4, 1: 6} for
        # {0: 0, 1: 6}; docs/deploy.md), while a quiet run gets the whole answer at once. Such an
        # answer only overstates the lag (an idle exit waits longer), so that is what is asserted.
        failures, answers = 0, []
        deadline = time.monotonic() + 90
        while (not answers or answers[-1] != before) and time.monotonic() < deadline:
            try:
                answers.append(probe.lag())
            except Exception:
                failures += 1
            if not answers or answers[-1] != before:
                time.sleep(1)
        assert answers, f"the probe never answered after its coordinator died ({failures} failed calls)"
        assert all(a[p] >= before[p] for a in answers for p in before), f"an answer understated the lag: {answers}"
        print(f"\ncoordinator {victim} killed: the lag probe answered again after {failures} failed call(s); "
              f"{len(answers)} answer(s), the last {'whole' if answers[-1] == before else f'without the commits: {answers[-1]}'}")
    finally:
        probe.close()
        node = cluster.nodes[victim - 1] if "victim" in locals() else None
        if node is not None and not node.running_pid():
            node._wait_ready(node.start(), 120)


# Once xfail (the coordinator hang, 1 run in 4-10); root-caused and fixed (GroupLag, the test above;
# the exactly-once hand-over abort, tests/ingest/test_exactly_once.py), then 10 runs in a row passed
# (`N=10 scripts/broker_kill_loop.sh`, docs/deploy.md).
@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_a_broker_killed_mid_stream_loses_nothing(cluster, tmp_path, mode) -> None:
    eos = mode == "exactly-once"
    bootstrap = cluster.bootstrap
    data = make_dataset(2_000, 40, seed=7)
    topics = {k: f"k3-{mode}-{k}" for k in ("in", "out", "dlq")}
    create_topics(bootstrap, [topics["in"], topics["out"]], 4, cluster.replication)
    create_topics(bootstrap, [topics["dlq"]], 1, cluster.replication)
    produce(bootstrap, topics["in"], data.values)
    log = tmp_path / "worker.log"

    def start():
        return start_worker(bootstrap, topics, f"k3-{mode}", "--rationale-enabled", "--rationale-processor",
                            ECHO_STAGE, "--batch-size", "50", "--commit-interval-ms", "300", "--ray-num-cpus", "2",
                            "--exit-when-idle", "5", "--ingest-stall-s", "60",
                            *(["--exactly-once"] if eos else []), log=log,
                            env={"LRSA_TEST_STAGE_DELAY_S": "0.003"})  # ~6 s of work: time to kill a broker

    worker = start()
    wait_for(lambda: results_so_far(bootstrap, topics["out"]) >= 400, 180, 0.2, what="400 results before the kill")
    # the group's coordinator: the case that hung (NotCoordinatorError, then silence); the clients
    # must find the group's new coordinator and, for broker 1, the cluster by the other addresses
    victim = group_coordinator(bootstrap, f"k3-{mode}")
    print(f"\n{mode}: killing broker {victim}, the coordinator of group k3-{mode}")
    cluster.kill(victim)
    wait_for(lambda: results_so_far(bootstrap, topics["out"]) >= 1_200, 180, 0.5, what="progress with a broker down")
    node = cluster.nodes[victim - 1]
    back = node.start()  # brought back while the worker runs
    code = wait_exit(worker, 240, log)
    restarts = 0
    if code != 0 and eos:
        # a supervisor's restart (Kubernetes, ray_cluster.yaml): the fenced transaction's posts are redone
        restarts += 1
        assert "ProducerFenced" in log.read_text(), log.read_text()[-3000:]
        code = wait_exit(start(), 240, log)
    assert code == 0, log.read_text()[-3000:]
    node._wait_ready(back, 120)
    results, letters, dups = read_outcome(bootstrap, topics, data, read_committed=eos)
    print(f"\n{mode}: broker {victim} killed mid-stream; {len(results)} results, {dups} duplicates, "
          f"{restarts} driver restart(s)")
    if eos:
        assert dups == 0

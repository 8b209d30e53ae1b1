"""A member joining the group takes partitions from a running ingest worker: the worker hands
them over (finishes and commits its work) inside kafka-python 3's rebalance listener, so the
new member starts where the worker stopped. Runs the ingest loop in a thread, without Ray (no
stages: posts pass straight through)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from kafka import KafkaConsumer

from streaming_helpers import committed_offsets, make_dataset, produce, read_all, wait_for
from workers.config import WorkerSettings
from workers.ingest.actor import IngestWorker


@pytest.mark.kafka
@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_joining_member_starts_where_the_worker_handed_over(kafka_bootstrap, kafka_topic, exactly_once) -> None:
    data = make_dataset(300, 20, seed=11)
    topics = {"in": kafka_topic("rb-in", 2), "out": kafka_topic("rb-out", 1), "dlq": kafka_topic("rb-dlq", 1)}
    group = f"rebalance-{time.monotonic_ns()}"
    # No periodic commit in the test's time: only the hand-over can commit.
    settings = WorkerSettings(bootstrap_servers=kafka_bootstrap, input_topic=topics["in"], output_topic=topics["out"],
                              dlq_topic=topics["dlq"], group_id=group, commit_interval_ms=3_600_000,
                              session_timeout_ms=6000, exactly_once=exactly_once)
    worker = IngestWorker(settings, index=0)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    joiner = None
    try:
        wait_for(lambda: worker.rebalance_started is None and getattr(worker, "consumer", None)
                 and worker.consumer.assignment(), 60,
                 what="the worker to be assigned its partitions")
        # the dropped-join workaround reads these; a kafka-python that renames them needs a look
        assert hasattr(worker.consumer._coordinator, "_join_task") and hasattr(worker.consumer._coordinator, "request_rejoin")
        produce(kafka_bootstrap, topics["in"], data.values)
        wait_for(lambda: worker.consumed == len(data.values), 60, what="the worker to consume every post")

        joiner = KafkaConsumer(topics["in"], bootstrap_servers=kafka_bootstrap, group_id=group,
                               isolation_level="read_committed" if exactly_once else "read_uncommitted",
                               enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=6000)
        redelivered = []
        deadline = time.monotonic() + 60
        while not joiner.assignment() and time.monotonic() < deadline:
            for recs in joiner.poll(timeout_ms=200).values():
                redelivered.extend(recs)
        assert joiner.assignment(), "the joining member got no partition"
        for _ in range(5):  # anything left uncommitted would come now
            for recs in joiner.poll(timeout_ms=200).values():
                redelivered.extend(recs)
    finally:
        worker.stop()
        thread.join(60)
        if joiner is not None:
            joiner.close()
    assert not thread.is_alive()
    committed = committed_offsets(kafka_bootstrap, group, topics["in"])
    assert sum(committed.values()) == len(data.values), committed
    assert redelivered == []
    outputs = read_all(kafka_bootstrap, topics["out"], exactly_once) + read_all(kafka_bootstrap, topics["dlq"], exactly_once)
    assert len(outputs) == len(data.values)


class _Coordinator:
    """The two pieces of kafka-python 3.0.12's coordinator state the workaround reads."""

    def __init__(self, join_done: bool) -> None:
        self._join_task = type("Task", (), {"is_done": join_done})()
        self.rejoin_requested = False

    def need_rejoin(self) -> bool:
        return self.rejoin_requested

    def request_rejoin(self) -> None:
        self.rejoin_requested = True


class _Consumer:
    def __init__(self, coordinator: _Coordinator) -> None:
        self._coordinator = coordinator
        self.calls: list[str] = []

    def unsubscribe(self) -> None:
        self.calls.append("unsubscribe")

    def subscribe(self, topics, listener=None) -> None:
        self.calls.append("subscribe")


@pytest.mark.parametrize("join_done, waited_s, want", [
    (True, 0.0, "request_rejoin"),   # the client dropped a finished join: rejoin at once
    (False, 1.0, None),              # a join still under way: wait
    (False, 13.0, "resubscribe"),    # two session timeouts (6 s) without an assignment
])
def test_a_dropped_join_is_repaired(join_done, waited_s, want) -> None:
    worker = IngestWorker(WorkerSettings(session_timeout_ms=6000), index=0)
    worker.consumer = _Consumer(_Coordinator(join_done))
    worker.rebalance_started = time.monotonic() - waited_s
    worker._rejoin_if_stuck()
    got = ("request_rejoin" if worker.consumer._coordinator.rejoin_requested
           else "resubscribe" if worker.consumer.calls == ["unsubscribe", "subscribe"] else None)
    assert got == want


def _recording(worker: IngestWorker) -> list[tuple[str, set, float]]:
    """Wrap the worker's listener entry: (kind, partitions, seconds it took) of every callback."""
    calls: list[tuple[str, set, float]] = []
    inner = worker.handle_rebalance

    async def record(request):
        start = time.monotonic()
        try:
            await inner(request)
        finally:
            calls.append((request.kind, {tp.partition for tp in request.partitions}, time.monotonic() - start))
    worker.handle_rebalance = record
    return calls


@pytest.mark.kafka
@pytest.mark.ray
def test_work_dropped_at_a_hand_over_is_read_again(kafka_bootstrap, kafka_topic, monkeypatch) -> None:
    """A slow stage outlasts the revoke's drain (--rebalance-drain-s, 1 s here): the hand-over
    returns within it, committing what is done and dropping the rest uncommitted. The partition it gets back keeps the client's fetch position, past the
    dropped records; the worker must read them again, so every good post still gets a result."""
    import ray

    from streaming_helpers import ECHO_STAGE, TESTS_DIR, ids_of
    from workers.stages.pool import start_pool

    data = make_dataset(120, 0, seed=12)
    topics = {"in": kafka_topic("rw-in", 2), "out": kafka_topic("rw-out", 1), "dlq": kafka_topic("rw-dlq", 1)}
    group = f"rewind-{time.monotonic_ns()}"
    monkeypatch.setenv("LRSA_TEST_STAGE_DELAY_S", "0.25")  # a batch of 8 takes 2 s; the drain gets 1 s
    monkeypatch.setenv("PYTHONPATH", f"{TESTS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        settings = WorkerSettings(bootstrap_servers=kafka_bootstrap, input_topic=topics["in"],
                                  output_topic=topics["out"], dlq_topic=topics["dlq"], group_id=group,
                                  session_timeout_ms=6000, rationale_enabled=True, rationale_processor=ECHO_STAGE,
                                  batch_size=8, max_inflight_batches=4, rebalance_drain_s=1.0)
        pools = {"rationale": start_pool("rationale", ECHO_STAGE, 1, 0.5, 0.0)}
        worker = IngestWorker(settings, index=0, pools=pools)
        calls = _recording(worker)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: worker.rebalance_started is None and getattr(worker, "consumer", None)
                     and worker.consumer.assignment(), 60, what="the worker to be assigned its partitions")
            produce(kafka_bootstrap, topics["in"], data.values)
            wait_for(lambda: worker.consumed > 0, 30, what="the worker to start consuming")
            # A member joins and leaves at once: two rebalances while the stage is busy.
            joiner = KafkaConsumer(topics["in"], bootstrap_servers=kafka_bootstrap, group_id=group,
                                   enable_auto_commit=False, session_timeout_ms=6000)
            deadline = time.monotonic() + 60
            while not joiner.assignment() and time.monotonic() < deadline:
                joiner.poll(timeout_ms=200)
            joiner.close(autocommit=False)
            wait_for(lambda: set(ids_of(read_all(kafka_bootstrap, topics["out"]))) >= data.good_ids, 150,
                     every_s=2, what="a result for every post")
        finally:
            worker.stop()
            thread.join(60)
    finally:
        ray.shutdown()
    revokes = [took for kind, parts, took in calls if kind == "revoked" and parts]
    print(f"revoke hand-overs took {[round(t, 2) for t in revokes]} s (--rebalance-drain-s 1)")
    assert revokes and max(revokes) < 1.0 + 1.5  # the drain's budget plus the commit's round trip



@pytest.mark.kafka
def test_cooperative_hand_over_moves_only_the_partitions_that_move(kafka_bootstrap, kafka_topic) -> None:
    """--partition-assignment cooperative-sticky (KIP-429): a member joining and then leaving a
    running worker's group costs the worker only the partitions that move. The worker is never
    revoked a partition it keeps, keeps consuming through both hand-overs (its longest pause is
    printed and bounded), and every post gets an output."""
    data = make_dataset(1600, 0, seed=21)
    topics = {"in": kafka_topic("coop-in", 4), "out": kafka_topic("coop-out", 1), "dlq": kafka_topic("coop-dlq", 1)}
    group = f"coop-{time.monotonic_ns()}"
    common = dict(bootstrap_servers=kafka_bootstrap, input_topic=topics["in"], output_topic=topics["out"],
                  dlq_topic=topics["dlq"], group_id=group, session_timeout_ms=8000, rebalance_drain_s=2.0,
                  partition_assignment="cooperative-sticky", poll_max_records=20)
    first = IngestWorker(WorkerSettings(**common), index=0)
    calls = _recording(first)
    threads = [threading.Thread(target=first.run, daemon=True)]
    threads[0].start()
    second = None
    progress: list[tuple[float, int, bool]] = []  # (time, posts the first worker consumed, feed running)

    def owned(worker) -> int:
        consumer = getattr(worker, "consumer", None) if worker is not None else None
        return len(consumer.assignment()) if consumer is not None else 0

    def watch(until, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            progress.append((time.monotonic(), first.consumed, feeder.is_alive()))
            if until():
                return True
            time.sleep(0.05)
        return False

    def feed() -> None:  # a steady stream for about 20 s: 20 posts every 0.25 s
        for i in range(0, len(data.values), 20):
            produce(kafka_bootstrap, topics["in"], data.values[i:i + 20])
            time.sleep(0.25)
    feeder = threading.Thread(target=feed, daemon=True)
    try:
        wait_for(lambda: owned(first) == 4, 60, what="the first worker to own all 4 partitions")
        feeder.start()
        wait_for(lambda: first.consumed > 100, 30, what="the first worker to consume")
        second = IngestWorker(WorkerSettings(**common), index=1)
        threads.append(threading.Thread(target=second.run, daemon=True))
        threads[1].start()
        assert watch(lambda: (owned(first), owned(second)) == (2, 2), 60), (owned(first), owned(second), calls)
        watch(lambda: False, 2)
        second.stop()
        threads[1].join(60)
        assert watch(lambda: owned(first) == 4, 60), ("the first worker did not get the partitions back", calls)
        feeder.join(120)
        wait_for(lambda: first.consumed + second.consumed >= len(data.values), 60, what="every post consumed")
        before_stop = list(calls)  # the stop revokes everything, as it should
    finally:
        first.stop()
        threads[0].join(60)
        if second is not None:
            second.stop()
    revokes = [parts for kind, parts, _ in before_stop if kind == "revoked"]
    assert revokes == [{2, 3}] or (revokes and all(len(parts) <= 2 for parts in revokes)), calls  # only what moves
    run, longest = 0.0, 0.0  # the longest stretch without the first worker consuming while posts arrive
    for a, b in zip(progress, progress[1:]):
        run = run + (b[0] - a[0]) if b[1] == a[1] and b[2] else 0.0
        longest = max(longest, run)
    assert sum(1 for *_, feeding in progress if feeding) > 40  # the hand-overs happened under the feed
    print(f"first worker's longest pause during the hand-overs: {longest:.2f}s; callbacks: {calls}")
    assert longest < 5.0
    outputs = read_all(kafka_bootstrap, topics["out"])
    assert {r.key.decode() for r in outputs} == data.good_ids  # nothing lost (at-least-once: repeats allowed)


@pytest.mark.kafka
def test_a_static_member_restarted_within_the_session_timeout_moves_nothing(kafka_bootstrap, kafka_topic) -> None:
    """--static-membership (KIP-345): a member that stops and comes back under the same instance
    id within the session timeout gets its own partitions back, and the other member is never
    revoked anything (no rebalance of the group)."""
    topics = {"in": kafka_topic("static-in", 4), "out": kafka_topic("static-out", 1),
              "dlq": kafka_topic("static-dlq", 1)}
    group = f"static-{time.monotonic_ns()}"
    common = dict(bootstrap_servers=kafka_bootstrap, input_topic=topics["in"], output_topic=topics["out"],
                  dlq_topic=topics["dlq"], group_id=group, session_timeout_ms=20000, static_membership=True)

    def start(instance: str) -> tuple[IngestWorker, threading.Thread]:
        worker = IngestWorker(WorkerSettings(**common, instance_id=instance), index=0)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        return worker, thread

    def owned(worker) -> set[int]:
        consumer = getattr(worker, "consumer", None)
        return {tp.partition for tp in consumer.assignment()} if consumer is not None else set()
    first, t1 = start("a")
    calls = _recording(first)
    wait_for(lambda: len(owned(first)) == 4, 60, what="the first member to own all 4 partitions")
    second, t2 = start("b")
    try:
        wait_for(lambda: len(owned(first)) == 2 and len(owned(second)) == 2, 60, what="2 partitions each")
        theirs = owned(second)
        settled = len(calls)
        second.stop()
        t2.join(60)
        second, t2 = start("b")  # the same instance id, well inside the 20 s session timeout
        wait_for(lambda: owned(second) == theirs, 30, what="the restarted member to get its partitions back")
        time.sleep(3)
        assert owned(first) == {0, 1, 2, 3} - theirs
        assert [c for c in calls[settled:] if c[0] in ("revoked", "lost")] == [], calls
    finally:
        first.stop()
        second.stop()
        t1.join(60)
        t2.join(60)


def test_the_rebalance_benchmark_measures_the_longest_gap_inside_its_window() -> None:
    from workers.bench.rebalance import _longest_gap

    assert _longest_gap([1000, 1500, 4000, 4200], 1000, 5000) == 2.5  # 1.5 s -> 4.0 s
    assert _longest_gap([], 0, 3000) == 3.0  # nothing output in the window: all of it
    assert _longest_gap([500, 9000], 1000, 2000) == 1.0  # outputs outside the window do not count

"""The ingest actor: one consumer-group member that owns its partitions end to end.

Per poll it validates each record, dead-letters bad ones, sends valid ones in batches through the
stage pools (or straight on, when no stage is enabled), and emits results with its own producer.
Only small things come back to it (stage answers); a Kafka commit is made by the member that owns
the partition, here, and only for offsets whose outputs the broker has acknowledged.

Three pieces: this module is the thin Kafka adapter (the consumer, the poll loop, the rebalance
listener, lag, status); `workers.ingest.batch_scheduler.BatchScheduler` (Kafka- and Ray-free) turns valid
posts into batches, runs them through the stages, retries, bisects and gives the backpressure
signal; `workers.ingest.output_committer.OutputCommitter` sends, settles acks, marks offsets done and
commits (plainly or in a transaction). The adapter wires the scheduler's `emit`/`dead_letter`
callbacks to the committer and gives it the Ray calls (`ray.wait`, `ray.get`) as plain functions.

Thread rules. One loop thread (the one running `run()`) owns the consumer, the scheduler, the
committer and the adapter's loop state: kafka-python's consumer is not thread-safe, and one loop
makes the ordering of "acknowledged -> committed" easy to see. The rebalance listener is the one
other caller: kafka-python 3.0.12 runs it on its IO thread, inside the `net.run()` that the loop
thread's `poll()` (or `close()`) blocks on without a timeout, so the loop thread is parked in
`poll()` for the whole callback and never runs beside it. The hand-over (drain, commit of the
finished offsets, forget) must end before the partitions leave, i.e. before the callback returns,
so it cannot be deferred to the loop thread (which cannot run until the callback returns): the
listener turns each callback into a `RebalanceRequest` and hands it to `handle_rebalance`, which
does the loop's own work on the loop's behalf while the loop thread waits (a hand-off, not
concurrency; a blocking consumer call there raises, hence the async listener and commit_async).
`stop()`, `set_paused()`, `status()`, `set_stage_actors()` and `drain_metrics()` arrive on other
threads of the (threaded) Ray actor and only touch thread-safe state: `stop()` sets an Event and
a float deadline, `set_paused()` an Event, both read by the loop; `status()` returns the snapshot
the loop publishes (`_publish`, a reference swapped at most every PUBLISH_EVERY_S) plus the pool
clients' counts taken under their locks: it never iterates the dicts and lists the loop mutates;
`set_stage_actors()` goes to the pool clients' locked `set_actors`; the metrics buffer locks itself.

No path waits without a deadline: a failing batch has a retry budget (attempts and time) after
which it is bisected down to the post(s) the stage fails on, which are dead-lettered
(`stage_failed`); a record the broker refuses is re-sent with back-off from the loop (never in a
blocking loop of its own) and reported; the stop path (drain, flush, commit, close) ends within
`stop_grace_s` whatever is still failing, leaving the unfinished offsets uncommitted. The one
exception is kafka-python's transactional calls (`init_transactions`, `commit_transaction`,
`send_offsets_to_transaction`), which take no timeout: the driver's stall watchdog
(`--ingest-stall-s`, workers/driver/pipeline.py) ends and replaces an actor whose loop stops ticking.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import AsyncConsumerRebalanceListener, TopicPartition
from kafka.errors import CommitFailedError, RebalanceInProgressError

from lrsa.schemas import ErrorInfo, SourceRef
from lrsa.validation import BadPost, Limits, parse_post
from workers.kafka_clients import clients as kafka_io
from workers.ingest.batch_scheduler import BatchScheduler
from workers.config import WorkerSettings
from workers.ingest.member_id import transactional_id
from workers.metrics import MetricsBuffer
from workers.ingest.offsets import OffsetTracker
from workers.ingest.output_committer import OutputCommitter
from workers.stages.api import WorkItem
from workers.stages.pool import PoolClient

log = logging.getLogger(__name__)

STOP_RESERVE_S = 5.0  # of stop_grace_s, kept by the driver to end the actors and Ray after the ingest actors' stop
PUBLISH_EVERY_S = 0.05  # how often the loop publishes the snapshot status() answers with


def actor_stop_budget_s(stop_grace_s: float) -> float:
    """How long an ingest actor's own stop (drain, flush, commit, close) may take of the grace period."""
    return max(stop_grace_s - STOP_RESERVE_S, stop_grace_s / 2)


def ray_ready(refs: list) -> list:
    """The finished ones of these stage calls, without waiting."""
    import ray

    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    return ready


def ray_result(ref) -> tuple[str, Any]:
    """A finished stage call's answer; an actor that died under it is a failure like any other."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError as e:  # restarted by Ray (max_restarts) or gone
        return "actor_died", str(e)


@dataclass(frozen=True)
class RebalanceRequest:
    kind: str  # "revoked" | "assigned" | "lost"
    partitions: tuple[TopicPartition, ...]


class _Rebalance(AsyncConsumerRebalanceListener):
    """kafka-python 3 calls the listener on its IO thread (while the loop thread waits in poll()),
    where a blocking consumer call raises: hence async, so the revoke commit can be awaited. Each
    callback only becomes a request for `IngestWorker.handle_rebalance` (see the module's thread rules)."""

    def __init__(self, worker: "IngestWorker") -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked):
        await self.worker.handle_rebalance(RebalanceRequest("revoked", tuple(revoked or ())))

    async def on_partitions_lost(self, lost):
        await self.worker.handle_rebalance(RebalanceRequest("lost", tuple(lost or ())))

    async def on_partitions_assigned(self, assigned):
        await self.worker.handle_rebalance(RebalanceRequest("assigned", tuple(assigned or ())))


class IngestWorker:
    def __init__(self, settings: WorkerSettings, index: int, pools: dict[str, list] | None = None) -> None:
        self.s = settings
        self.index = index
        self.stages = [PoolClient(st.name, (pools or {}).get(st.name, [])) for st in settings.stage_settings()]
        self.limits = Limits(settings.max_text_chars, settings.max_image_bytes)
        self.metrics = MetricsBuffer()
        self.tracker = OffsetTracker()
        self.scheduler = BatchScheduler(settings, self.stages, ready=ray_ready, result=ray_result,
                                        emit=self._emit, dead_letter=self._stage_dead_letter, metrics=self.metrics)
        self.committer = OutputCommitter(settings, index, self.metrics, self.tracker, self._stop_left)
        self._stop = threading.Event()
        self.rebalance_started: float | None = None  # set by the listener: a rebalance is under way
        self._restart_points: dict[TopicPartition, int] = {}  # revoked with work dropped
        self._originals: dict[tuple[TopicPartition, int], tuple[bytes | None, bytes | None]] = {}  # in stages
        self._stop_deadline: float | None = None  # monotonic; set by stop(): the stop path ends by then
        self._paused = False
        self._barrier = False                     # exactly-once: waiting for in-flight work to commit
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self._lag: dict[TopicPartition, int] = {}
        self._last_record = time.monotonic()
        self.first_record_at: float | None = None  # wall clock, for throughput measurements
        self.consumed = 0
        self.left_uncommitted = 0  # posts timed-out hand-overs dropped (on stop or revoke); refetched later
        self._operator_pause = threading.Event()  # set by the control endpoint (via the driver): fetch nothing
        self._published_at = 0.0
        self._published = self._snapshot()  # replaced (never mutated) by the loop; read by status()

    @property
    def refused(self) -> int:
        """Records the broker refused that are still not acknowledged (being re-sent)."""
        return self.committer.refused

    @property
    def last_commit_at(self) -> float | None:
        return self.committer.last_commit_at

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        s = self.s
        txn_id = transactional_id(s.group_id, s.instance_id, self.index) if s.exactly_once else None
        self.producer = kafka_io.producer(s, transactional_id=txn_id,
                                          transaction_timeout_ms=s.transaction_timeout_ms) if txn_id \
            else kafka_io.producer(s)
        if txn_id:
            self.producer.init_transactions()  # fences a crashed predecessor, aborts its open transaction
        self.committer.open(self.producer)
        self.consumer = kafka_io.consumer(s, group_id=s.group_id, read_committed=s.exactly_once,
                                          auto_offset_reset=s.auto_offset_reset,
                                          max_poll_records=s.poll_max_records,
                                          session_timeout_ms=s.session_timeout_ms,
                                          heartbeat_interval_ms=min(3000, s.session_timeout_ms // 4),
                                          partition_assignment_strategy=kafka_io.assignment_strategy(
                                              s.partition_assignment),
                                          group_instance_id=transactional_id(s.group_id, s.instance_id, self.index)
                                          if s.static_membership else None)
        self._await_input_partitions()
        self._subscribe()
        log.info("ingest %d consuming %s as group %s (%s)", self.index, s.input_topic, s.group_id,
                 "exactly-once" if s.exactly_once else "at-least-once")
        try:
            while not self._stop.is_set():
                self._step()
            self._hand_over(timeout_s=min(self.s.drain_timeout_s, max(0.0, self._stop_left() - 3.0)))
            self._publish()
        finally:
            self.consumer.close(autocommit=False)
            self.committer.close(timeout=max(0.5, min(5.0, self._stop_left())))
        if self.refused:
            log.error("ingest %d stopped with %d records the broker refused (their posts stay uncommitted and are "
                      "redone after a restart)", self.index, self.refused)
        log.info("ingest %d stopped after %d posts", self.index, self.consumed)
        return self.status()

    def _subscribe(self) -> None:
        self.consumer.subscribe([self.s.input_topic], listener=_Rebalance(self))

    def _rejoin_if_stuck(self) -> None:
        """kafka-python 3.0.12 can lose a rebalance: when poll()'s timeout ends its wait for a join
        that a metadata change triggered, the next poll() no longer sees a rejoin as needed and
        never applies the finished join's result, so the member sits without partitions (such a
        join follows nearly every start). Where the client's internals show that state, ask for a
        rejoin at once; otherwise, after two session timeouts without an assignment, leave and
        rejoin."""
        since = self.rebalance_started
        if since is None:
            return
        coordinator = getattr(self.consumer, "_coordinator", None)
        join = getattr(coordinator, "_join_task", None)
        if join is not None and getattr(join, "is_done", False) and not coordinator.need_rejoin():
            log.info("ingest %d: the client dropped a finished join; rejoining", self.index)
            self.metrics.inc("lrsa_rejoins_total", kind="dropped_join")
            coordinator.request_rejoin()
        elif time.monotonic() - since >= 2 * self.s.session_timeout_ms / 1000:
            log.warning("ingest %d: rebalance unfinished after %.0fs; leaving and rejoining the group",
                        self.index, time.monotonic() - since)
            self.metrics.inc("lrsa_rejoins_total", kind="timeout")
            self.rebalance_started = None
            self.consumer.unsubscribe()
            self._subscribe()

    def _await_input_partitions(self) -> None:
        """Join the group only once the input topic's partitions are known: a member that joins
        before gets an empty first assignment and depends on the metadata-triggered rejoin that
        kafka-python can drop (see _rejoin_if_stuck)."""
        waited = 0.0
        while not self._stop.is_set() and not self.consumer.partitions_for_topic(self.s.input_topic):
            if waited % 10 == 0:
                log.warning("ingest %d: input topic %s has no partitions yet; waiting", self.index, self.s.input_topic)
            time.sleep(0.5)
            waited += 0.5

    def stop(self) -> None:
        """Graceful: stop fetching, finish in-flight work, commit, close, all within
        actor_stop_budget_s(stop_grace_s) from now (from any thread: sets the deadline, then the Event)."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + actor_stop_budget_s(self.s.stop_grace_s)
        self._stop.set()

    def _stop_left(self) -> float:
        """Seconds left of the stop budget (unbounded while not stopping)."""
        return float("inf") if self._stop_deadline is None else self._stop_deadline - time.monotonic()

    def status(self) -> dict[str, Any]:
        """From any thread: the loop's last published snapshot, with the fresh values that are safe
        to read here (the idle time; batches on actors that left a pool, under the pool's lock)."""
        now = time.monotonic()
        # how long the loop has not published: the driver replaces an actor stuck past --ingest-stall-s
        return {**self._published, "idle_s": now - self._last_record,
                "loop_age_s": now - self._published_at if self._published_at else None,
                "paused_by_operator": self._operator_pause.is_set(),
                "retiring_inflight": {st.stage: st.retiring_inflight() for st in self.stages}}

    def _snapshot(self) -> dict[str, Any]:
        """The loop's state as plain values (loop thread only)."""
        consumer = getattr(self, "consumer", None)
        queued, inflight = self.scheduler.counts()
        return {"index": self.index, "at": time.time(),
                "busy": bool(self.scheduler.busy or self.committer.unacked or self.tracker.pending),
                "lag": sum(self._lag.values()),
                "lag_by_partition": {f"{tp.topic}/{tp.partition}": v for tp, v in sorted(self._lag.items())},
                "assigned": len(consumer.assignment()) if consumer is not None else 0,
                "paused_partitions": len(consumer.paused()) if consumer is not None else 0,
                "consumed": self.consumed,
                "first_record_at": self.first_record_at, "last_commit_at": self.last_commit_at,
                "left_uncommitted": self.left_uncommitted, "refused": self.refused,
                "busy_slot_s": {st.stage: self.scheduler.busy_slot_s[i] for i, st in enumerate(self.stages)},
                "inflight": {st.stage: inflight[i] for i, st in enumerate(self.stages)},
                "queued": {st.stage: queued[i] for i, st in enumerate(self.stages)}}

    def _publish(self) -> None:
        self._published = self._snapshot()
        self._published_at = time.monotonic()

    def set_paused(self, paused: bool) -> None:
        """Operator pause (any thread): the loop pauses every assigned partition while it is set;
        batches in flight finish, emit and commit meanwhile."""
        (self._operator_pause.set if paused else self._operator_pause.clear)()

    def set_stage_actors(self, stage: str, actors: list) -> None:
        for pool in self.stages:
            if pool.stage == stage:
                pool.set_actors(actors)

    # ---- the loop ----------------------------------------------------------------------------

    def _step(self) -> None:
        self._rejoin_if_stuck()
        sched = self.scheduler
        sched.integrate_busy_slots()
        records = self.consumer.poll(timeout_ms=5 if sched.busy else 100, max_records=self.s.poll_max_records)
        start = time.perf_counter()
        n = 0
        for tp, recs in records.items():
            for r in recs:
                self._handle(tp, r)
            n += len(recs)
        if n:
            self._record_consumed(n, start)
        if sched.due(now=self._barrier):
            sched.submit_pending()
        if sched.batches:
            sched.advance()
        if self.committer.resend:
            self.committer.resend_due()
        self._backpressure()
        now = time.monotonic()
        if now - self._last_commit >= self.s.commit_interval_ms / 1000:
            # A transaction must hold every output of the offsets it commits: in exactly-once mode
            # fetching pauses (barrier) until the work in flight is out, then it commits.
            if not self.s.exactly_once or not sched.busy:
                self._commit()
            else:
                self._barrier = True
        if now - self._last_lag >= self.s.metrics_interval_s:
            self._report_lag()
        if now - self._published_at >= PUBLISH_EVERY_S:
            self._publish()

    def _record_consumed(self, n: int, start: float) -> None:
        self.consumed += n
        self._last_record = time.monotonic()
        if self.first_record_at is None:
            self.first_record_at = time.time()
        self.metrics.inc("lrsa_posts_consumed_total", n, topic=self.s.input_topic)
        self.metrics.observe("lrsa_stage_latency_seconds", time.perf_counter() - start, stage="ingest")
        self.metrics.observe("lrsa_stage_batch_size", n, stage="ingest")

    def _handle(self, tp: TopicPartition, record) -> None:
        self.tracker.add(tp, record.offset)
        source = SourceRef(topic=tp.topic, partition=tp.partition, offset=record.offset)
        try:
            post = parse_post(record.value, self.limits)
        except BadPost as e:
            self.committer.dead_letter(tp, record.key, record.value, source,
                                       ErrorInfo(reason=e.reason, error_class=e.error_class, message=e.message))
            return
        item = WorkItem(post=post, source=source, kafka_timestamp_ms=record.timestamp)
        if not self.stages:
            self._emit(item)
            return
        self._originals[(tp, record.offset)] = (record.key, record.value)  # for a stage_failed dead letter
        self.scheduler.add(item)

    def _emit(self, item: WorkItem) -> None:
        """The scheduler's `emit`: every stage is done with this post."""
        self._originals.pop((TopicPartition(item.source.topic, item.source.partition), item.source.offset), None)
        self.committer.emit(item)

    def _stage_dead_letter(self, item: WorkItem, stage: str, kind: str, message: str) -> None:
        """The scheduler's `dead_letter`: a post the stage fails on alone, sent with its original record."""
        tp = TopicPartition(item.source.topic, item.source.partition)
        key, value = self._originals.pop((tp, item.source.offset), (item.post.id.encode(), None))
        self.committer.stage_dead_letter(item, key, value, stage, kind, message)

    def _backpressure(self) -> None:
        """Pause every assigned partition while the scheduler is full (BatchScheduler.full), during an
        exactly-once barrier, while stopping, or while the operator pauses the actor."""
        should_pause = self.scheduler.full() or self._barrier or self._stop.is_set() or self._operator_pause.is_set()
        assigned = self.consumer.assignment()
        if should_pause and assigned - self.consumer.paused():
            self.consumer.pause(*assigned)  # newly assigned partitions are paused too
        elif not should_pause and self._paused:
            self.consumer.resume(*self.consumer.paused())
        self._paused = should_pause
        for i, pool in enumerate(self.stages):
            self.metrics.set("lrsa_inflight_batches", self.scheduler.inflight(i), stage=pool.stage, actor=self.index)
        self.metrics.set("lrsa_partitions_paused", len(self.consumer.paused()), actor=self.index)

    # ---- commits and hand-over -----------------------------------------------------------------

    def _commit(self, commit_offsets: Callable[[dict], Any] | None = None) -> None:
        """Commit what is acknowledged; `commit_offsets` replaces the blocking consumer.commit."""
        self._last_commit = time.monotonic()
        self._barrier = False
        try:
            self.committer.commit(commit_offsets or self.consumer.commit, self.consumer.group_metadata)
        except (RebalanceInProgressError, CommitFailedError) as e:
            # The group is moving partitions (a cooperative rebalance runs while this loop keeps
            # consuming): nothing was committed; the offsets stay pending and the next commit, after
            # the rebalance, sends them. Revoked ones are committed by the revoke hand-over.
            log.info("ingest %d: commit deferred, the group is rebalancing (%s)", self.index, type(e).__name__)

    def _drain(self, timeout_s: float | None = None) -> bool:
        """Finish every batch in flight (no new fetches meanwhile); False if time ran out."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        sched = self.scheduler
        while sched.busy:
            if deadline is not None and time.monotonic() > deadline:
                return False
            sched.submit_pending()
            sched.advance()
            if self.committer.resend:
                self.committer.resend_due()
            if sched.busy:
                time.sleep(0.002)
        return True

    def _hand_over(self, timeout_s: float | None = None, commit_offsets: Callable[[dict], Any] | None = None) -> int:
        """Before stopping or losing partitions: finish in-flight work and commit; if a stage is
        still failing after the timeout (drain_timeout_s), commit only what is done and drop the
        rest, which the next owner of the partitions (or a restart) fetches again from the
        committed offsets. Returns the posts left to be read again."""
        timeout_s = self.s.drain_timeout_s if timeout_s is None else timeout_s
        eos = self.s.exactly_once
        drained = self._drain(timeout_s=timeout_s)
        if drained or not eos:  # at-least-once commits what is done even when time ran out
            self._commit(commit_offsets)
        if drained and not (eos and self.committer.in_txn):
            return 0
        sched = self.scheduler
        why = (f"{len(sched.batches)} batches still in flight after {timeout_s}s" if not drained
               else "broker acks still out (a broker just died, say)")
        if eos:
            # The open transaction holds outputs whose offsets are not committed: work still in
            # flight, or (drained, the commit deferred) outputs the broker has not acknowledged.
            # The next owner (or this member, rewound) reads every uncommitted post again, so the
            # transaction must never commit later beside them: abort it; each is redone once.
            dropped = self.tracker.pending
            self.committer.abort()
        else:
            dropped = sum(len(b.items) for b in sched.batches) + len(sched.pending)
        self.left_uncommitted += dropped
        log.warning("ingest %d: hand-over with %s: %s%d posts left uncommitted, to be read again", self.index, why,
                    "the open transaction aborted; " if eos else "", dropped)
        sched.drop_all()
        self._originals.clear()
        return dropped

    # ---- rebalances (IO thread, while the loop thread is parked in poll(): see the module docstring) --

    async def handle_rebalance(self, request: RebalanceRequest) -> None:
        """The listener's one entry: do what the loop would do for this rebalance request, now,
        before the client goes on (the loop thread is blocked in poll() or close() meanwhile)."""
        if request.kind == "revoked":
            if self.s.partition_assignment == "eager":  # eager: a revoke opens the rebalance; cooperative:
                self.rebalance_started = time.monotonic()  # it comes with the join's result, which is done
            if request.partitions:
                await self.on_revoked(list(request.partitions))
        elif request.kind == "lost":
            if request.partitions:
                self.on_lost(list(request.partitions))
        elif request.kind == "assigned":
            self.rebalance_started = None
            self.rewind(request.partitions)
            log.info("ingest %d assigned %s", self.index, sorted((tp.topic, tp.partition) for tp in request.partitions))
        else:
            raise ValueError(f"unknown rebalance request {request.kind!r}")

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Before another member takes these partitions: finish and commit what we have.

        Runs on the consumer's IO thread, whose heartbeats wait meanwhile: the drain gets
        --rebalance-drain-s (5 s; at most half a session timeout), then what is done is committed
        (sent without blocking, then awaited) and the rest is dropped, to be read again: by the
        next owner for the revoked partitions (one that comes back to this member is rewound in
        `rewind`), and at once by this member for the partitions it keeps (cooperative hand-overs
        revoke only the partitions that move)."""
        log.info("ingest %d losing %s; draining and committing", self.index,
                 sorted((tp.topic, tp.partition) for tp in revoked))
        sent = []
        dropped = 0
        start = time.monotonic()
        try:
            dropped = self._hand_over(
                timeout_s=min(self.s.rebalance_drain_s, self.s.drain_timeout_s, self.s.session_timeout_ms / 2000),
                commit_offsets=lambda offsets: sent.append(self.consumer.commit_async(offsets)))
            for future in sent:
                await future
        except Exception:  # the group moved on: at-least-once redelivers what was not committed
            log.exception("commit on revoke failed")
        gone = set(revoked)
        kept = [tp for tp in self.consumer.assignment() if tp not in gone] if dropped else []
        self._restart_points = self.tracker.restart_points(revoked)
        kept_restarts = self.tracker.restart_points(kept)
        self._forget(revoked)
        self._forget(list(kept_restarts))  # their dropped work is read again from the restart point
        for tp, offset in kept_restarts.items():  # (cooperative: the partitions this member keeps)
            log.info("ingest %d: re-reading kept %s from offset %d after the hand-over", self.index,
                     (tp.topic, tp.partition), offset)
            self.consumer.seek(tp, offset)
        log.info("ingest %d handed over %d partition(s) in %.2fs (%d posts left to be read again)", self.index,
                 len(revoked), time.monotonic() - start, dropped)

    def rewind(self, assigned) -> None:
        """A partition handed back to this member keeps the client's fetch position, which is past
        the work the hand-over dropped: read it again from the restart point."""
        for tp in assigned:
            if tp in self._restart_points:
                log.info("ingest %d: re-reading %s from offset %d", self.index, (tp.topic, tp.partition),
                         self._restart_points[tp])
                self.consumer.seek(tp, self._restart_points[tp])
        self._restart_points = {}

    def on_lost(self, lost: list[TopicPartition]) -> None:
        """Evicted from the group: the partitions are someone else's, and a commit would be refused.
        Work in flight still emits (duplicates, at-least-once); its offsets are no longer tracked."""
        log.warning("ingest %d lost %s without a hand-over", self.index, sorted((tp.topic, tp.partition) for tp in lost))
        self._forget(lost)

    def _forget(self, tps: list[TopicPartition]) -> None:
        self.tracker.revoke(tps)
        for tp in tps:
            self._lag.pop(tp, None)
            # No longer ours: the new owner reports its lag (a stale value here would stay for ever).
            self.metrics.remove("lrsa_consumer_lag_messages", topic=tp.topic, partition=tp.partition)
        gone = set(tps)
        self._originals = {k: v for k, v in self._originals.items() if k[0] not in gone}

    # ---- lag and metrics -----------------------------------------------------------------------

    def _report_lag(self) -> None:
        self._last_lag = time.monotonic()
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        try:
            ends = self.consumer.end_offsets(assigned)
        except Exception as e:  # lag is best effort; the next interval tries again
            log.debug("end_offsets failed: %s", e)
            return
        for tp, end in ends.items():
            pos = self.consumer.position(tp)
            committed = self.tracker.last_committed(tp, default=pos)
            self._lag[tp] = max(0, end - pos)
            self.metrics.set("lrsa_consumer_lag_messages", max(0, end - committed), topic=tp.topic, partition=tp.partition)

    def drain_metrics(self) -> dict[str, Any]:
        return self.metrics.drain()


class IngestActor:
    """Ray actor around IngestWorker (threaded: `stop`/`status` run while `run` loops)."""

    def __init__(self, settings: dict, index: int, pools: dict[str, list]) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("kafka").setLevel(logging.WARNING)
        self.worker = IngestWorker(WorkerSettings(**settings), index, pools)

    def run(self) -> dict[str, Any]:
        return self.worker.run()

    def stop(self) -> None:
        self.worker.stop()

    def status(self) -> dict[str, Any]:
        return self.worker.status()

    def drain_metrics(self) -> dict[str, Any]:
        return self.worker.drain_metrics()

    def set_stage_actors(self, stage: str, actors: list) -> None:
        self.worker.set_stage_actors(stage, actors)

    def set_paused(self, paused: bool) -> None:
        self.worker.set_paused(paused)

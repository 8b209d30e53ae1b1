"""The ingest actor: one consumer-group member that owns its partitions end to end.

Per poll it validates each record, dead-letters bad ones, sends valid ones in batches through the
stage pools (or straight on, when no stage is enabled), and emits results with its own producer.
Only small things come back to it (stage answers); a Kafka commit is made by the member that owns
the partition, here, and only for offsets whose outputs the broker has acknowledged.

Single-threaded by design: kafka-python's consumer is not thread-safe, and one loop makes the
ordering of "acknowledged -> committed" easy to see. `stop()`, `set_paused()`, `status()`,
`set_stage_actors()` and `drain_metrics()` arrive on other threads of the (threaded) Ray actor and
only touch thread-safe state: `stop()` sets an Event and a float deadline, `set_paused()` an Event,
both read by the loop; `status()` returns the snapshot the loop publishes (`_publish`, a reference
swapped at most every PUBLISH_EVERY_S) plus the pool clients' counts taken under their locks: it never
iterates the dicts and lists the loop mutates.

No path waits without a deadline: a failing batch has a retry budget (attempts and time) after
which it is bisected down to the post(s) the stage fails on, which are dead-lettered
(`stage_failed`); a record the broker refuses is re-sent with back-off from the loop (never in a
blocking loop of its own) and reported; the stop path (drain, flush, commit, close) ends within
`stop_grace_s` whatever is still failing, leaving the unfinished offsets uncommitted.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import AsyncConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from lrsa.schemas import DeadLetter, DeadLetterReason, ErrorInfo, SourceRef
from lrsa.validation import BadPost, Limits, parse_post
from workers import kafka_io
from workers.config import WorkerSettings
from workers.member_id import transactional_id
from workers.metrics import MetricsBuffer
from workers.offsets import OffsetTracker
from workers.result_build import build_result
from workers.stage_api import WorkItem
from workers.stages import PoolClient

log = logging.getLogger(__name__)

MAX_UNACKED = 20_000  # sends awaiting the broker's ack before the loop waits for them
FLUSH_WAIT_S = 10.0   # longest one wait for the broker's acks (the loop goes on; unacked sends are checked again)
STOP_RESERVE_S = 5.0  # of stop_grace_s, kept by the driver to end the actors and Ray after the ingest actors' stop
PUBLISH_EVERY_S = 0.05  # how often the loop publishes the snapshot status() answers with


def actor_stop_budget_s(stop_grace_s: float) -> float:
    """How long an ingest actor's own stop (drain, flush, commit, close) may take of the grace period."""
    return max(stop_grace_s - STOP_RESERVE_S, stop_grace_s / 2)


@dataclass
class Batch:
    items: list[WorkItem]
    stage: int = 0            # index into the enabled stages
    ref: Any = None           # Ray ObjectRef of the running call
    actor: int = -1
    attempts: int = 0
    retry_at: float = 0.0     # > 0: waiting to be resubmitted after a failure
    started: float = field(default_factory=time.perf_counter)
    max_attempts: int = 0     # retry budget in attempts (0: the settings'); pieces of a split get 1
    first_failed: float = 0.0  # monotonic time of the first failure: the time budget runs from here


@dataclass
class Unacked:
    future: Any
    tp: TopicPartition
    offset: int
    topic: str
    key: bytes | None
    value: bytes
    resends: int = 0


class _Rebalance(AsyncConsumerRebalanceListener):
    """kafka-python 3 calls the listener on its IO thread (while the loop thread waits in poll()),
    where a blocking consumer call raises: hence async, so the revoke commit can be awaited."""

    def __init__(self, worker: "IngestWorker") -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked):
        self.worker.rebalance_started = time.monotonic()
        if revoked:
            await self.worker.on_revoked(list(revoked))

    async def on_partitions_lost(self, lost):
        if lost:
            self.worker.on_lost(list(lost))

    async def on_partitions_assigned(self, assigned):
        self.worker.rebalance_started = None
        self.worker.rewind(assigned)
        log.info("ingest %d assigned %s", self.worker.index, sorted((tp.topic, tp.partition) for tp in assigned))


class IngestWorker:
    def __init__(self, settings: WorkerSettings, index: int, pools: dict[str, list] | None = None) -> None:
        self.s = settings
        self.index = index
        self.stages = [PoolClient(name, (pools or {}).get(name, [])) for name, *_ in settings.stage_settings()]
        self.limits = Limits(settings.max_text_chars, settings.max_image_bytes)
        self.metrics = MetricsBuffer()
        self.tracker = OffsetTracker()
        self._stop = threading.Event()
        self.rebalance_started: float | None = None  # set by the listener: a rebalance is under way
        self._restart_points: dict[TopicPartition, int] = {}  # revoked with work dropped
        self._pending: list[WorkItem] = []        # valid posts waiting to fill a batch
        self._pending_since = 0.0
        self._batches: list[Batch] = []           # submitted or waiting to retry
        self._unacked: list[Unacked] = []         # sent, not yet known to be acknowledged
        self._resend: list[tuple[float, Unacked]] = []  # refused by the broker: re-sent at the time given
        self._originals: dict[tuple[TopicPartition, int], tuple[bytes | None, bytes | None]] = {}  # in stages
        self._stop_deadline: float | None = None  # monotonic; set by stop(): the stop path ends by then
        self.refused = 0  # records the broker refused that are still not acknowledged (being re-sent)
        self._paused = False
        self._barrier = False                     # exactly-once: waiting for in-flight work to commit
        self._in_txn = False
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self._lag: dict[TopicPartition, int] = {}
        self._last_record = time.monotonic()
        self._busy_slot_s = [0.0] * len(self.stages)  # per stage: in-flight batches integrated over time
        self._busy_slot_at = time.monotonic()
        self.first_record_at: float | None = None  # wall clock, for throughput measurements
        self.last_commit_at: float | None = None
        self.consumed = 0
        self.left_uncommitted = 0  # posts timed-out hand-overs dropped (on stop or revoke); refetched later
        self._operator_pause = threading.Event()  # set by the control endpoint (via the driver): fetch nothing
        self._published_at = 0.0
        self._published = self._snapshot()  # replaced (never mutated) by the loop; read by status()

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        s = self.s
        txn_id = transactional_id(s.group_id, s.instance_id, self.index) if s.exactly_once else None
        self.producer = kafka_io.producer(s, transactional_id=txn_id,
                                          transaction_timeout_ms=s.transaction_timeout_ms) if txn_id \
            else kafka_io.producer(s)
        if txn_id:
            self.producer.init_transactions()  # fences a crashed predecessor, aborts its open transaction
        self.consumer = kafka_io.consumer(s, group_id=s.group_id, read_committed=s.exactly_once,
                                          auto_offset_reset=s.auto_offset_reset,
                                          max_poll_records=s.poll_max_records,
                                          session_timeout_ms=s.session_timeout_ms,
                                          heartbeat_interval_ms=min(3000, s.session_timeout_ms // 4))
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
            self.producer.close(timeout=max(0.5, min(5.0, self._stop_left())))
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
        return {**self._published, "idle_s": time.monotonic() - self._last_record,
                "paused_by_operator": self._operator_pause.is_set(),
                "retiring_inflight": {st.stage: st.retiring_inflight() for st in self.stages}}

    def _snapshot(self) -> dict[str, Any]:
        """The loop's state as plain values (loop thread only)."""
        consumer = getattr(self, "consumer", None)
        queued = [0] * len(self.stages)
        inflight = [0] * len(self.stages)
        for b in self._batches:
            (inflight if b.ref is not None else queued)[b.stage] += 1
        if self.stages and self._pending:
            queued[0] += -(-len(self._pending) // self.s.batch_size)
        return {"index": self.index, "at": time.time(),
                "busy": bool(self._pending or self._batches or self._unacked or self.tracker.pending),
                "lag": sum(self._lag.values()),
                "lag_by_partition": {f"{tp.topic}/{tp.partition}": v for tp, v in sorted(self._lag.items())},
                "assigned": len(consumer.assignment()) if consumer is not None else 0,
                "paused_partitions": len(consumer.paused()) if consumer is not None else 0,
                "consumed": self.consumed,
                "first_record_at": self.first_record_at, "last_commit_at": self.last_commit_at,
                "left_uncommitted": self.left_uncommitted, "refused": self.refused,
                "busy_slot_s": {st.stage: self._busy_slot_s[i] for i, st in enumerate(self.stages)},
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
        self._integrate_busy_slots()
        busy = bool(self._batches or self._pending)
        records = self.consumer.poll(timeout_ms=5 if busy else 100, max_records=self.s.poll_max_records)
        start = time.perf_counter()
        n = 0
        for tp, recs in records.items():
            for r in recs:
                self._handle(tp, r)
            n += len(recs)
        if n:
            self._record_consumed(n, start)
        if self._pending and (len(self._pending) >= self.s.batch_size or self._barrier or
                              time.monotonic() - self._pending_since >= self.s.batch_max_wait_ms / 1000):
            self._submit_pending()
        if self._batches:
            self._advance()
        if self._resend:
            self._resend_due()
        self._backpressure()
        now = time.monotonic()
        if now - self._last_commit >= self.s.commit_interval_ms / 1000:
            # A transaction must hold every output of the offsets it commits: in exactly-once mode
            # fetching pauses (barrier) until the work in flight is out, then it commits.
            if not self.s.exactly_once or not (self._pending or self._batches):
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
            self._dead_letter(tp, record, source, e)
            return
        item = WorkItem(post=post, source=source, kafka_timestamp_ms=record.timestamp)
        if not self.stages:
            self._emit(item)
            return
        self._originals[(tp, record.offset)] = (record.key, record.value)  # for a stage_failed dead letter
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(item)

    # ---- stages ------------------------------------------------------------------------------

    def _inflight(self, stage: int) -> int:
        return sum(1 for b in self._batches if b.stage == stage)

    def _integrate_busy_slots(self) -> None:
        """Batch-seconds in flight per stage: the driver grows a pool on their average over a window,
        which a point sample (often caught between a batch's end and its successor) cannot give."""
        now = time.monotonic()
        for i in range(len(self.stages)):
            self._busy_slot_s[i] += self._inflight(i) * (now - self._busy_slot_at)  # unchanged since last step
        self._busy_slot_at = now

    def _submit_pending(self) -> None:
        # Batches waiting for a retry hold no slot: the others keep flowing meanwhile.
        while self._pending and self._inflight_running(0) < self.s.max_inflight_batches:
            items, self._pending = self._pending[:self.s.batch_size], self._pending[self.s.batch_size:]
            batch = Batch(items)
            self._batches.append(batch)
            self._submit(batch)
        self._pending_since = time.monotonic()

    def _submit(self, batch: Batch) -> None:
        pool = self.stages[batch.stage]
        batch.ref, batch.actor = pool.submit(batch.items)
        if batch.ref is None:  # the pool has no actor right now (the driver is replacing them)
            batch.retry_at = time.monotonic() + self.s.retry_initial_s
            return
        batch.retry_at = 0.0
        batch.started = time.perf_counter()
        self.metrics.observe("lrsa_stage_batch_size", len(batch.items), stage=pool.stage)

    def _advance(self) -> None:
        """Collect finished stage calls: pass each batch on, emit it, or schedule its retry."""
        import ray

        running = [b for b in self._batches if b.ref is not None]
        if running:
            ready, _ = ray.wait([b.ref for b in running], num_returns=len(running), timeout=0)
            ready_ids = set(ready)
            for b in running:
                if b.ref in ready_ids:
                    self._finish(b)
        now = time.monotonic()
        for b in self._batches:
            if b.ref is None and 0 < b.retry_at <= now and self._inflight_running(b.stage) < self.s.max_inflight_batches:
                self._submit(b)

    def _inflight_running(self, stage: int) -> int:
        return sum(1 for b in self._batches if b.stage == stage and b.ref is not None)

    def _finish(self, b: Batch) -> None:
        import ray

        pool = self.stages[b.stage]
        pool.release(b.actor)
        try:
            kind, payload = ray.get(b.ref)
        except ray.exceptions.RayActorError as e:  # restarted by Ray (max_restarts) or gone
            kind, payload = "actor_died", str(e)
        b.ref = None
        self.metrics.observe("lrsa_stage_latency_seconds", time.perf_counter() - b.started, stage=pool.stage)
        if kind != "ok":
            self._failed(b, kind, payload)
            return
        b.items = payload
        b.attempts, b.first_failed, b.max_attempts = 0, 0.0, 0
        if b.stage + 1 < len(self.stages):
            b.stage += 1
            if self._inflight_running(b.stage) < self.s.max_inflight_batches:
                self._submit(b)
            else:
                b.retry_at = time.monotonic()  # waits for a free slot in the next stage
            return
        self._batches.remove(b)
        for item in b.items:
            self._emit(item)

    def _failed(self, b: Batch, kind: str, message: str) -> None:
        """A stage call failed: retry within the budget, else (or at once when it is NonRetryable)
        split. A stage that says it is down ("down") is retried for as long as that lasts."""
        now = time.monotonic()
        b.first_failed = b.first_failed or now
        budget = b.max_attempts or self.s.retry_budget_attempts
        spent = b.attempts + 1 >= budget or now - b.first_failed >= self.s.retry_budget_s
        if kind == "nonretryable" or (kind != "down" and spent):
            stage = self.stages[b.stage].stage
            self.metrics.inc("lrsa_stage_errors_total", stage=stage, kind=kind)
            self._split(b, kind, message)
        else:
            self._schedule_retry(b, kind, message)

    def _split(self, b: Batch, kind: str, message: str) -> None:
        """Bisect a batch the stage keeps failing on; a single post that fails alone is dead-lettered.
        Halves get one attempt each (a failure splits again); single posts get the full budget, so
        no post is dead-lettered for one flaky failure."""
        stage = self.stages[b.stage].stage
        self._batches.remove(b)
        if len(b.items) == 1:
            item = b.items[0]
            log.warning("stage %s: post %s at %s/%d/%d fails alone (%s: %s); dead-lettering it as stage_failed",
                        stage, item.post.id, item.source.topic, item.source.partition, item.source.offset,
                        kind, message)
            self._stage_dead_letter(item, stage, kind, message)
            return
        log.warning("stage %s: %s after %d attempt(s) (%s); splitting a batch of %d to find the post(s) it fails on",
                    stage, kind, b.attempts + 1, message, len(b.items))
        self.metrics.inc("lrsa_batch_splits_total", stage=stage)
        half = len(b.items) // 2
        for part in (b.items[:half], b.items[half:]):
            piece = Batch(part, stage=b.stage, max_attempts=1 if len(part) > 1 else 0)
            piece.retry_at = time.monotonic()  # submitted by _advance as soon as the stage has a free slot
            self._batches.append(piece)

    def _schedule_retry(self, b: Batch, kind: str, message: str) -> None:
        stage = self.stages[b.stage].stage
        b.attempts += 1
        delay = min(self.s.retry_max_s, self.s.retry_initial_s * 2 ** (b.attempts - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter: pools recovering together do not stampede
        b.retry_at = time.monotonic() + delay
        self.metrics.inc("lrsa_stage_errors_total", stage=stage, kind="transient" if kind == "down" else kind)
        self.metrics.inc("lrsa_stage_retries_total", stage=stage)
        log.warning("stage %s: %s (%s); retry %d of a batch of %d in %.1fs",
                    stage, kind, message, b.attempts, len(b.items), delay)

    def _backpressure(self) -> None:
        """Pause every assigned partition while stage 0 is full or too many batches are held. A batch
        waiting for its retry holds no slot, so the rest keep flowing past it (bounded: at most
        4 x max_inflight_batches batches are held, retrying, split or running)."""
        cap = self.s.max_inflight_batches
        full = bool(self.stages) and (self._inflight_running(0) >= cap or len(self._batches) >= 4 * cap
                                      or len(self._pending) >= self.s.batch_size * cap)
        should_pause = full or self._barrier or self._stop.is_set() or self._operator_pause.is_set()
        assigned = self.consumer.assignment()
        if should_pause and assigned - self.consumer.paused():
            self.consumer.pause(*assigned)  # newly assigned partitions are paused too
        elif not should_pause and self._paused:
            self.consumer.resume(*self.consumer.paused())
        self._paused = should_pause
        for i, pool in enumerate(self.stages):
            self.metrics.set("lrsa_inflight_batches", self._inflight(i), stage=pool.stage, actor=self.index)
        self.metrics.set("lrsa_partitions_paused", len(self.consumer.paused()), actor=self.index)

    # ---- output ------------------------------------------------------------------------------

    def _emit(self, item: WorkItem) -> None:
        self._originals.pop((TopicPartition(item.source.topic, item.source.partition), item.source.offset), None)
        result = build_result(item, self.s)
        self._send(self.s.output_topic, item.post.id.encode(), result.model_dump_json().encode(),
                   TopicPartition(item.source.topic, item.source.partition), item.source.offset)

    def _dead_letter(self, tp: TopicPartition, record, source: SourceRef, e: BadPost) -> None:
        self._send_dead_letter(tp, record.key, record.value, source,
                               ErrorInfo(reason=e.reason, error_class=e.error_class, message=e.message))

    def _stage_dead_letter(self, item: WorkItem, stage: str, kind: str, message: str) -> None:
        tp = TopicPartition(item.source.topic, item.source.partition)
        key, value = self._originals.pop((tp, item.source.offset), (item.post.id.encode(), None))
        if value is None:  # not kept (should not happen): the validated post stands in for the original
            value = item.post.model_dump_json().encode()
        error_class = message.split(":", 1)[0] if ":" in message else kind
        self._send_dead_letter(tp, key, value, item.source, ErrorInfo(
            reason=DeadLetterReason.stage_failed, error_class=error_class or kind,
            message=f"stage {stage} failed on this post ({kind}): {message}"))

    def _send_dead_letter(self, tp: TopicPartition, key: bytes | None, value: bytes | None, source: SourceRef,
                          error: ErrorInfo) -> None:
        value = value or b""
        # The dead letter carries the original as base64 (4/3 larger): cut what cannot fit.
        room = (self.s.max_message_bytes - 4096) * 3 // 4
        message = error.message if len(value) <= room else f"{error.message} [original truncated to {room} bytes]"
        letter = DeadLetter(original_b64=base64.b64encode(value[:room]).decode(),
                            original_key_b64=base64.b64encode(key).decode() if key else None,
                            error=error.model_copy(update={"message": message[:2000]}), source=source)
        self.metrics.inc("lrsa_posts_dead_lettered_total", reason=error.reason.value)
        self._send(self.s.dlq_topic, key, letter.model_dump_json().encode(), tp, source.offset)

    def _send(self, topic: str, key: bytes | None, value: bytes, tp: TopicPartition, offset: int,
              resends: int = 0) -> None:
        if self.s.exactly_once and not self._in_txn:
            self.producer.begin_transaction()
            self._in_txn = True
        future = self.producer.send(topic, value=value, key=key)
        self._unacked.append(Unacked(future, tp, offset, topic, key, value, resends))
        if len(self._unacked) >= MAX_UNACKED:  # the producer's buffer is unbounded: bound it here
            self._settle_sends()

    def _resend_due(self) -> None:
        """Re-send the refused records whose back-off has passed (from the loop: stop stays responsive)."""
        now, later = time.monotonic(), []
        for at, u in self._resend:
            if at <= now:
                self._send(u.topic, u.key, u.value, u.tp, u.offset, u.resends)
            else:
                later.append((at, u))
        self._resend = later

    # ---- commits -----------------------------------------------------------------------------

    def _settle_sends(self) -> None:
        """Wait (at most FLUSH_WAIT_S, less when stopping) for the broker's acks; mark acknowledged
        offsets done; schedule refused records for a re-send with back-off (by _resend_due, from the
        loop) and report them; sends still unanswered stay for the next call. Never loops itself."""
        if not self._unacked:
            return
        start = time.perf_counter()
        try:
            self.producer.flush(timeout=max(0.1, min(FLUSH_WAIT_S, self._stop_left())))
        except KafkaTimeoutError:
            log.warning("ingest %d: broker acks for %d records not in yet; checking again later",
                        self.index, sum(not u.future.is_done for u in self._unacked))
        unsettled, failed, emitted = [], [], 0
        for u in self._unacked:
            if not u.future.is_done:
                unsettled.append(u)
            elif u.future.succeeded():
                self.refused -= u.resends > 0  # a refused record got through at last
                self.tracker.done(u.tp, u.offset)
                emitted += u.topic == self.s.output_topic
            else:
                failed.append(u)
        self.metrics.inc("lrsa_posts_emitted_total", emitted, topic=self.s.output_topic)
        self.metrics.observe("lrsa_stage_latency_seconds", time.perf_counter() - start, stage="emit")
        self._unacked = unsettled
        if not failed:
            return
        if self.s.exactly_once:  # a failed send poisons the transaction: let a restart redo it
            raise RuntimeError(f"{len(failed)} transactional sends failed: {failed[0].future.exception}")
        self.metrics.inc("lrsa_send_retries_total", len(failed))
        for u in failed:
            self._refused(u)

    def _refused(self, u: Unacked) -> None:
        """The broker refused a record. Retriable errors are re-sent quietly; one it refuses for
        good (e.g. larger than the topic's max.message.bytes) is re-sent too, since dropping it
        would lose the post, but it is counted (lrsa_send_refused_total) and logged, and its
        partition's commits stay behind it until an operator fixes the cause. kafka-python's idempotent
        producer aborts the batches in flight with such a record as well: those records get the same
        error and are re-sent the same way (the back-off, up to retry_max_s, keeps that rare)."""
        error = u.future.exception
        for_good = not getattr(error, "retriable", False)
        if for_good:
            self.metrics.inc("lrsa_send_refused_total", topic=u.topic, error=type(error).__name__)
            if u.resends == 0 or u.resends % 10 == 0:
                log.error("ingest %d: broker refuses a record for %s (%d bytes, source %s/%d/%d) for good: %s: %s; "
                          "its offset stays uncommitted; re-sending (attempt %d)", self.index, u.topic, len(u.value),
                          u.tp.topic, u.tp.partition, u.offset, type(error).__name__, error, u.resends + 1)
        else:
            log.warning("ingest %d: broker refused a record for %s (%s); re-sending", self.index, u.topic, error)
        delay = min(self.s.retry_max_s, self.s.retry_initial_s * 2 ** min(u.resends, 16))
        self.refused += u.resends == 0  # records refused and not yet acknowledged
        u.resends += 1
        self._resend.append((time.monotonic() + delay, u))

    def _commit(self, commit_offsets: Callable[[dict], Any] | None = None) -> None:
        """Commit what is acknowledged; `commit_offsets` replaces the blocking consumer.commit."""
        self._last_commit = time.monotonic()
        self._barrier = False
        self._settle_sends()
        if self.s.exactly_once and self._unacked:
            # acks still out (the bounded wait ended): a transaction committed now would hold outputs
            # whose offsets only the next one commits. Try again at the next interval.
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self.tracker.to_commit().items()}
        if self.s.exactly_once:
            if self._in_txn:
                if offsets:
                    self.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
                self.producer.commit_transaction()
                self._in_txn = False
                self.metrics.inc("lrsa_commits_total", mode="transaction")
        elif offsets:
            (commit_offsets or self.consumer.commit)(offsets)
            self.metrics.inc("lrsa_commits_total", mode="offsets")
        if offsets:
            self.tracker.committed({tp: o.offset for tp, o in offsets.items()})
            self.last_commit_at = time.time()
        self.metrics.set("lrsa_uncommitted_posts", self.tracker.pending, actor=self.index)

    def _drain(self, timeout_s: float | None = None) -> bool:
        """Finish every batch in flight (no new fetches meanwhile); False if time ran out."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._pending or self._batches:
            if deadline is not None and time.monotonic() > deadline:
                return False
            self._submit_pending()
            self._advance()
            if self._resend:
                self._resend_due()
            if self._pending or self._batches:
                time.sleep(0.002)
        return True

    def _hand_over(self, timeout_s: float | None = None, commit_offsets: Callable[[dict], Any] | None = None) -> None:
        """Before stopping or losing partitions: finish in-flight work and commit; if a stage is
        still failing after the timeout (drain_timeout_s), commit only what is done and drop the
        rest, which the next owner of the partitions (or a restart) fetches again from the
        committed offsets."""
        timeout_s = self.s.drain_timeout_s if timeout_s is None else timeout_s
        if self._drain(timeout_s=timeout_s):
            self._commit(commit_offsets)
            return
        dropped = sum(len(b.items) for b in self._batches) + len(self._pending)
        self.left_uncommitted += dropped
        log.warning("ingest %d: %d batches (%d posts) still in flight after %ss; leaving them uncommitted",
                    self.index, len(self._batches), dropped, timeout_s)
        if self.s.exactly_once:
            if self._in_txn:  # its outputs may run ahead of the committable offsets
                self.producer.abort_transaction()
                self._in_txn = False
                self._unacked = []
        else:
            self._commit(commit_offsets)
        for b in self._batches:
            if b.ref is not None:
                self.stages[b.stage].release(b.actor)
        self._batches, self._pending = [], []
        self._originals.clear()

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Before another member takes these partitions: finish and commit what we have.

        Runs on the consumer's IO thread, whose heartbeats wait meanwhile: the drain gets half a
        session timeout (the rest is redone by the next owner), and the commit is sent without
        blocking and then awaited."""
        log.info("ingest %d losing %s; draining and committing", self.index,
                 sorted((tp.topic, tp.partition) for tp in revoked))
        sent = []
        try:
            self._hand_over(timeout_s=min(self.s.drain_timeout_s, self.s.session_timeout_ms / 2000),
                            commit_offsets=lambda offsets: sent.append(self.consumer.commit_async(offsets)))
            for future in sent:
                await future
        except Exception:  # the group moved on: at-least-once redelivers what was not committed
            log.exception("commit on revoke failed")
        self._restart_points = self.tracker.restart_points(revoked)
        self._forget(revoked)

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
            self.metrics.remove("lrsa_consumer_lag", topic=tp.topic, partition=tp.partition)
        gone = set(tps)
        self._originals = {k: v for k, v in self._originals.items() if k[0] not in gone}

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
            self.metrics.set("lrsa_consumer_lag", max(0, end - committed), topic=tp.topic, partition=tp.partition)

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

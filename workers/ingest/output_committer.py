"""The ingest actor's output side: sends, acknowledgements, offsets and transactions.

It sends results and dead letters with the actor's own producer, keeps each send until the broker
answers (`Unacked`), re-sends what the broker refused with back-off (from the loop, never in a
blocking loop of its own), marks an offset done in the OffsetTracker only once its output is
acknowledged, and commits the committable offsets: with the consumer's commit (at-least-once), or
inside the producer's transaction with send_offsets_to_transaction (exactly-once). The consumer
itself is not held here: `commit()` takes the commit call and the group metadata from the adapter.

Thread rules: single-threaded, like the scheduler. The ingest actor's loop thread calls it; during
a rebalance hand-over the consumer's IO thread calls it while the loop thread is parked inside
kafka-python's poll() (so never both at once). Nothing is locked. The producer is thread-safe, and
its futures are resolved on the producer's sender thread; `refused` and `last_commit_at` are plain
values that the loop's published snapshot copies for `status()` on other threads.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from lrsa.backoff import Backoff
from lrsa.schemas import DeadLetter, DeadLetterReason, ErrorInfo, SourceRef
from workers.metrics import MetricsBuffer
from workers.ingest.offsets import OffsetTracker
from workers.ingest.result_build import build_result
from workers.stages.api import WorkItem

log = logging.getLogger(__name__)

MAX_UNACKED = 20_000  # sends awaiting the broker's ack before the loop waits for them
FLUSH_WAIT_S = 10.0   # longest one wait for the broker's acks (the loop goes on; unacked sends are checked again)


@dataclass
class Unacked:
    future: Any
    tp: TopicPartition
    offset: int
    topic: str
    key: bytes | None
    value: bytes
    resends: int = 0


class OutputCommitter:
    """`stop_left()` gives the seconds left of the actor's stop budget (inf while not stopping):
    the waits for acks never run past it."""

    def __init__(self, settings: Any, index: int, metrics: MetricsBuffer, tracker: OffsetTracker,
                 stop_left: Callable[[], float]) -> None:
        self.s = settings
        self.index = index
        self.metrics = metrics
        self.tracker = tracker
        self._stop_left = stop_left
        self.producer: Any = None  # set by the adapter when the actor starts (open())
        self.unacked: list[Unacked] = []         # sent, not yet known to be acknowledged
        self.resend: list[tuple[float, Unacked]] = []  # refused by the broker: re-sent at the time given
        self.refused = 0  # records the broker refused that are still not acknowledged (being re-sent)
        self.in_txn = False
        self.last_commit_at: float | None = None  # wall clock of the last commit that moved an offset

    def open(self, producer: Any) -> None:
        self.producer = producer

    # ---- sends -------------------------------------------------------------------------------

    def emit(self, item: WorkItem) -> None:
        result = build_result(item, self.s)
        self.send(self.s.output_topic, item.post.id.encode(), result.model_dump_json().encode(),
                  TopicPartition(item.source.topic, item.source.partition), item.source.offset)

    def stage_dead_letter(self, item: WorkItem, key: bytes | None, value: bytes | None, stage: str, kind: str,
                          message: str) -> None:
        """A post a stage fails on alone: dead-letter its original record (key, value) as stage_failed."""
        tp = TopicPartition(item.source.topic, item.source.partition)
        if value is None:  # not kept (should not happen): the validated post stands in for the original
            value = item.post.model_dump_json().encode()
        error_class = message.split(":", 1)[0] if ":" in message else kind
        self.dead_letter(tp, key, value, item.source, ErrorInfo(
            reason=DeadLetterReason.stage_failed, error_class=error_class or kind,
            message=f"stage {stage} failed on this post ({kind}): {message}"))

    def dead_letter(self, tp: TopicPartition, key: bytes | None, value: bytes | None, source: SourceRef,
                    error: ErrorInfo) -> None:
        value = value or b""
        # The dead letter carries the original as base64 (4/3 larger): cut what cannot fit.
        room = (self.s.max_message_bytes - 4096) * 3 // 4
        message = error.message if len(value) <= room else f"{error.message} [original truncated to {room} bytes]"
        letter = DeadLetter(original_b64=base64.b64encode(value[:room]).decode(),
                            original_key_b64=base64.b64encode(key).decode() if key else None,
                            error=error.model_copy(update={"message": message[:2000]}), source=source)
        self.metrics.inc("lrsa_posts_dead_lettered_total", reason=error.reason.value)
        self.send(self.s.dlq_topic, key, letter.model_dump_json().encode(), tp, source.offset)

    def send(self, topic: str, key: bytes | None, value: bytes, tp: TopicPartition, offset: int,
             resends: int = 0) -> None:
        if self.s.exactly_once and not self.in_txn:
            self.producer.begin_transaction()
            self.in_txn = True
        future = self.producer.send(topic, value=value, key=key)
        self.unacked.append(Unacked(future, tp, offset, topic, key, value, resends))
        if len(self.unacked) >= MAX_UNACKED:  # the producer's buffer is unbounded: bound it here
            self.settle_sends()

    def resend_due(self) -> None:
        """Re-send the refused records whose back-off has passed (from the loop: stop stays responsive)."""
        if not self.resend:
            return
        now, later = time.monotonic(), []
        for at, u in self.resend:
            if at <= now:
                self.send(u.topic, u.key, u.value, u.tp, u.offset, u.resends)
            else:
                later.append((at, u))
        self.resend = later

    # ---- acknowledgements ----------------------------------------------------------------------

    def settle_sends(self) -> None:
        """Wait (at most FLUSH_WAIT_S, less when stopping) for the broker's acks; mark acknowledged
        offsets done; schedule refused records for a re-send with back-off (by resend_due, from the
        loop) and report them; sends still unanswered stay for the next call. Never loops itself."""
        if not self.unacked:
            return
        start = time.perf_counter()
        try:
            self.producer.flush(timeout=max(0.1, min(FLUSH_WAIT_S, self._stop_left())))
        except KafkaTimeoutError:
            log.warning("ingest %d: broker acks for %d records not in yet; checking again later",
                        self.index, sum(not u.future.is_done for u in self.unacked))
        unsettled, failed, emitted = [], [], 0
        for u in self.unacked:
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
        self.unacked = unsettled
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
        delay = Backoff(self.s.retry_initial_s, self.s.retry_max_s, jitter=0).delay(u.resends)
        self.refused += u.resends == 0  # records refused and not yet acknowledged
        u.resends += 1
        self.resend.append((time.monotonic() + delay, u))

    # ---- commits -----------------------------------------------------------------------------

    def commit(self, commit_offsets: Callable[[dict], Any], group_metadata: Callable[[], Any]) -> None:
        """Commit what is acknowledged: `commit_offsets` (the consumer's commit, or on revoke its
        commit_async) in at-least-once mode; the open transaction, with the offsets sent into it
        for the consumer group `group_metadata()` names, in exactly-once mode."""
        self.settle_sends()
        if self.s.exactly_once and self.unacked:
            # acks still out (the bounded wait ended): a transaction committed now would hold outputs
            # whose offsets only the next one commits. Try again at the next interval.
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self.tracker.to_commit().items()}
        if self.s.exactly_once:
            if self.in_txn:
                if offsets:
                    self.producer.send_offsets_to_transaction(offsets, group_metadata())
                self.producer.commit_transaction()
                self.in_txn = False
                self.metrics.inc("lrsa_commits_total", mode="transaction")
        elif offsets:
            commit_offsets(offsets)
            self.metrics.inc("lrsa_commits_total", mode="offsets")
        if offsets:
            self.tracker.committed({tp: o.offset for tp, o in offsets.items()})
            self.last_commit_at = time.time()
        self.metrics.set("lrsa_uncommitted_posts", self.tracker.pending, actor=self.index)

    def abort(self) -> None:
        """Exactly-once hand-over that timed out: the open transaction's outputs may run ahead of the
        committable offsets; abort it (its posts are redone from the committed offsets)."""
        if self.in_txn:
            self.producer.abort_transaction()
            self.in_txn = False
            self.unacked = []

    def close(self, timeout: float) -> None:
        if self.producer is not None:
            self.producer.close(timeout=timeout)

"""The ingest actor's scheduler: valid posts -> batches -> the stages in order, without Kafka or Ray.

It owns the posts waiting to fill a batch, the batches submitted or waiting to retry, the advance
of each batch through the enabled stages, the retry budget of a failing batch (attempts and time,
with jittered exponential back-off), the bisection of a batch the stage keeps failing on down to
the post(s) it fails on, and the backpressure signal (`full()`: stop fetching). It reports what
became of each post through two callbacks, `emit(item)` (every stage done) and
`dead_letter(item, stage, kind, message)` (a post that fails alone), and never touches Kafka.

The stages are objects with `stage` (its name), `submit(items) -> (ref, actor)` ((None, -1) while
the pool has no actor) and `release(actor)`: `workers.stages.pool.PoolClient` in the actor, plain fakes
in tests. What a ref is, is the caller's business: `ready(refs)` answers which of the given refs
have finished (without waiting) and `result(ref)` gives a finished call's `(kind, payload)`: "ok"
with the items, or a failure kind ("transient", "down", "nonretryable", "error", "actor_died")
with a message (workers/stages/pool.py). The ingest actor passes `ray.wait`/`ray.get` wrappers.

Thread rules: single-threaded. Every method is called by the one thread that drives it (the
ingest actor's loop thread, or the consumer's IO thread while the loop thread is parked inside
kafka-python's poll() during a rebalance hand-over; never both at once), and so are the callbacks.
Nothing here is locked; the pool clients guard their own state (the driver changes a pool's actors
from another thread). `status()` on other threads never reads this object: it reads the snapshot
the loop publishes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lrsa.backoff import Backoff
from workers.metrics import MetricsBuffer
from workers.stages.api import WorkItem

log = logging.getLogger(__name__)


class Stage(Protocol):
    stage: str

    def submit(self, items: list[WorkItem]) -> tuple[Any, int]: ...

    def release(self, actor: int) -> None: ...


@dataclass
class Batch:
    items: list[WorkItem]
    stage: int = 0            # index into the enabled stages
    ref: Any = None           # the running call (a Ray ObjectRef in the actor)
    actor: int = -1
    attempts: int = 0
    retry_at: float = 0.0     # > 0: waiting to be resubmitted after a failure
    started: float = field(default_factory=time.perf_counter)
    max_attempts: int = 0     # retry budget in attempts (0: the settings'); pieces of a split get 1
    first_failed: float = 0.0  # monotonic time of the first failure: the time budget runs from here


class BatchScheduler:
    """`settings` needs batch_size, batch_max_wait_ms, max_inflight_batches, retry_initial_s,
    retry_max_s, retry_budget_attempts and retry_budget_s (a WorkerSettings does). `clock` is the
    monotonic clock (deadlines, back-off), `perf_clock` times stage calls, `jitter(a, b)` draws the
    back-off's jitter: all three injectable so tests neither sleep nor guess."""

    def __init__(self, settings: Any, stages: list[Stage], *, ready: Callable[[list], list],
                 result: Callable[[Any], tuple[str, Any]], emit: Callable[[WorkItem], None],
                 dead_letter: Callable[[WorkItem, str, str, str], None], metrics: MetricsBuffer | None = None,
                 clock: Callable[[], float] = time.monotonic, perf_clock: Callable[[], float] = time.perf_counter,
                 jitter: Callable[[float, float], float] = random.uniform) -> None:
        self.s = settings
        self.stages = stages
        self._ready, self._result = ready, result
        self._emit, self._dead_letter = emit, dead_letter
        self.metrics = metrics if metrics is not None else MetricsBuffer()
        self._clock, self._perf, self._jitter = clock, perf_clock, jitter
        self.pending: list[WorkItem] = []  # valid posts waiting to fill a batch
        self.pending_since = 0.0
        self.batches: list[Batch] = []     # submitted or waiting to retry
        self.busy_slot_s = [0.0] * len(stages)  # per stage: in-flight batches integrated over time
        self._busy_slot_at = clock()

    # ---- intake ------------------------------------------------------------------------------

    def add(self, item: WorkItem) -> None:
        if not self.pending:
            self.pending_since = self._clock()
        self.pending.append(item)

    @property
    def busy(self) -> bool:
        """Posts waiting for a batch or batches in the stages."""
        return bool(self.pending or self.batches)

    def due(self, now: bool = False) -> bool:
        """A batch should be sent: a full one waits, the oldest post waited its max, or `now` (a barrier)."""
        return bool(self.pending) and (len(self.pending) >= self.s.batch_size or now or
                                       self._clock() - self.pending_since >= self.s.batch_max_wait_ms / 1000)

    def submit_pending(self) -> None:
        # Batches waiting for a retry hold no slot: the others keep flowing meanwhile.
        while self.pending and self.inflight_running(0) < self.s.max_inflight_batches:
            items, self.pending = self.pending[:self.s.batch_size], self.pending[self.s.batch_size:]
            batch = Batch(items)
            self.batches.append(batch)
            self._submit(batch)
        self.pending_since = self._clock()

    # ---- counts --------------------------------------------------------------------------------

    def inflight(self, stage: int) -> int:
        """Batches held at a stage: running, waiting for a slot or for a retry."""
        return sum(1 for b in self.batches if b.stage == stage)

    def inflight_running(self, stage: int) -> int:
        return sum(1 for b in self.batches if b.stage == stage and b.ref is not None)

    def counts(self) -> tuple[list[int], list[int]]:
        """(queued, running) batches per stage; pending posts count as stage 0's queued batches."""
        queued = [0] * len(self.stages)
        inflight = [0] * len(self.stages)
        for b in self.batches:
            (inflight if b.ref is not None else queued)[b.stage] += 1
        if self.stages and self.pending:
            queued[0] += -(-len(self.pending) // self.s.batch_size)
        return queued, inflight

    def integrate_busy_slots(self) -> None:
        """Batch-seconds in flight per stage: the driver grows a pool on their average over a window,
        which a point sample (often caught between a batch's end and its successor) cannot give."""
        now = self._clock()
        for i in range(len(self.stages)):
            self.busy_slot_s[i] += self.inflight(i) * (now - self._busy_slot_at)  # unchanged since last step
        self._busy_slot_at = now

    def full(self) -> bool:
        """Backpressure: stop fetching while stage 0 is full or too many batches are held. A batch
        waiting for its retry holds no slot, so the rest keep flowing past it (bounded: at most
        4 x max_inflight_batches batches are held, retrying, split or running)."""
        cap = self.s.max_inflight_batches
        return bool(self.stages) and (self.inflight_running(0) >= cap or len(self.batches) >= 4 * cap
                                      or len(self.pending) >= self.s.batch_size * cap)

    # ---- the stages ----------------------------------------------------------------------------

    def _submit(self, batch: Batch) -> None:
        pool = self.stages[batch.stage]
        batch.ref, batch.actor = pool.submit(batch.items)
        if batch.ref is None:  # the pool has no actor right now (the driver is replacing them)
            batch.retry_at = self._clock() + self.s.retry_initial_s
            return
        batch.retry_at = 0.0
        batch.started = self._perf()
        self.metrics.observe("lrsa_stage_batch_size", len(batch.items), stage=pool.stage)

    def advance(self) -> None:
        """Collect finished stage calls: pass each batch on, emit it, or schedule its retry."""
        running = [b for b in self.batches if b.ref is not None]
        if running:
            ready_ids = set(self._ready([b.ref for b in running]))
            for b in running:
                if b.ref in ready_ids:
                    self._finish(b)
        now = self._clock()
        for b in self.batches:
            if b.ref is None and 0 < b.retry_at <= now and self.inflight_running(b.stage) < self.s.max_inflight_batches:
                self._submit(b)

    def _finish(self, b: Batch) -> None:
        pool = self.stages[b.stage]
        pool.release(b.actor)
        kind, payload = self._result(b.ref)
        b.ref = None
        self.metrics.observe("lrsa_stage_latency_seconds", self._perf() - b.started, stage=pool.stage)
        if kind != "ok":
            self._failed(b, kind, payload)
            return
        b.items = payload
        b.attempts, b.first_failed, b.max_attempts = 0, 0.0, 0
        if b.stage + 1 < len(self.stages):
            b.stage += 1
            if self.inflight_running(b.stage) < self.s.max_inflight_batches:
                self._submit(b)
            else:
                b.retry_at = self._clock()  # waits for a free slot in the next stage
            return
        self.batches.remove(b)
        for item in b.items:
            self._emit(item)

    def _failed(self, b: Batch, kind: str, message: str) -> None:
        """A stage call failed: retry within the budget, else (or at once when it is NonRetryable)
        split. A stage that says it is down ("down") is retried for as long as that lasts."""
        now = self._clock()
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
        self.batches.remove(b)
        if len(b.items) == 1:
            item = b.items[0]
            log.warning("stage %s: post %s at %s/%d/%d fails alone (%s: %s); dead-lettering it as stage_failed",
                        stage, item.post.id, item.source.topic, item.source.partition, item.source.offset,
                        kind, message)
            self._dead_letter(item, stage, kind, message)
            return
        log.warning("stage %s: %s after %d attempt(s) (%s); splitting a batch of %d to find the post(s) it fails on",
                    stage, kind, b.attempts + 1, message, len(b.items))
        self.metrics.inc("lrsa_batch_splits_total", stage=stage)
        half = len(b.items) // 2
        for part in (b.items[:half], b.items[half:]):
            piece = Batch(part, stage=b.stage, max_attempts=1 if len(part) > 1 else 0)
            piece.retry_at = self._clock()  # submitted by advance() as soon as the stage has a free slot
            self.batches.append(piece)

    def _schedule_retry(self, b: Batch, kind: str, message: str) -> None:
        stage = self.stages[b.stage].stage
        b.attempts += 1
        # half jitter: pools recovering together do not stampede
        delay = Backoff(self.s.retry_initial_s, self.s.retry_max_s, jitter=0.5).delay(b.attempts - 1, self._jitter)
        b.retry_at = self._clock() + delay
        self.metrics.inc("lrsa_stage_errors_total", stage=stage, kind="transient" if kind == "down" else kind)
        self.metrics.inc("lrsa_stage_retries_total", stage=stage)
        log.warning("stage %s: %s (%s); retry %d of a batch of %d in %.1fs",
                    stage, kind, message, b.attempts, len(b.items), delay)

    # ---- hand-over -----------------------------------------------------------------------------

    def drop_all(self) -> int:
        """Give up every post not yet emitted (a timed-out hand-over): release the running calls'
        slots and forget the batches and pending posts. Returns how many posts were dropped."""
        dropped = sum(len(b.items) for b in self.batches) + len(self.pending)
        for b in self.batches:
            if b.ref is not None:
                self.stages[b.stage].release(b.actor)
        self.batches, self.pending = [], []
        return dropped

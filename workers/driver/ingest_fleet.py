"""The driver's ingest actors (consumer-group members): started, asked for their status each
tick, replaced when one dies, fails or stalls (within --ingest-replacements), paused and resumed,
stopped, and their metrics collected. What their statuses add up to (busy slot-seconds, in-flight
and queued batches per stage, lag, quiet) is read here too.

Runs on the supervise loop's thread; every Ray call has a deadline."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from workers.config import WorkerSettings
from workers.kafka_clients.security import KafkaAuthError
from workers.metrics import DriverMetrics

log = logging.getLogger(__name__)


class IngestFleet:
    def __init__(self, s: WorkerSettings, metrics: DriverMetrics, new_actor: Callable[[int], Any]) -> None:
        self.s = s
        self.metrics = metrics
        self._new_actor = new_actor  # index -> a started actor; a replacement gets the index it replaces
        self.actors: list[Any] = []
        self.runs: dict[Any, int] = {}  # each actor's run() ref -> its index
        self.statuses: list[dict[str, Any]] = []        # latest status of each ingest actor
        self.final_statuses: list[dict[str, Any]] = []  # what each ingest actor's run() returned
        self.replacements = 0  # replaced so far (--ingest-replacements)
        self._answered_at: dict[int, float] = {}  # index -> when its status last came in

    def start(self) -> list[Any]:
        """Start --ingest-actors actors; their run() refs."""
        self.actors = [self._new_actor(i) for i in range(self.s.ingest_actors)]
        self.runs = {a.run.remote(): i for i, a in enumerate(self.actors)}
        return list(self.runs)

    def refresh_statuses(self, wait_s: float = 5.0) -> None:
        """Each ingest actor's status, asked of all at once; one that does not answer within
        `wait_s` (its process stopped, or its threads starved) keeps its last status, and how long
        it has not answered counts towards --ingest-stall-s."""
        import ray

        refs = [a.status.remote() for a in self.actors]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s)
        done = set(done)
        now = time.monotonic()
        latest = {st["index"]: st for st in self.statuses}
        for index, ref in enumerate(refs):
            self._answered_at.setdefault(index, now)
            if ref not in done:
                continue
            try:
                latest[index] = ray.get(ref)
                self._answered_at[index] = now
            except ray.exceptions.RayActorError as e:  # its run() reports it next and it is replaced
                log.warning("ingest %d did not answer its status: %s", index, str(e).strip().splitlines()[0])
        self.statuses = [latest[i] for i in sorted(latest) if i < len(self.actors)]

    def stalled(self, stall_s: float) -> list[tuple[int, str]]:
        """(index, why) of each ingest actor whose loop has not ticked, or that has not answered
        at all, for longer than stall_s."""
        now = time.monotonic()
        out = []
        for index in range(len(self.actors)):
            silent = now - self._answered_at.get(index, now)
            age = next((st.get("loop_age_s") for st in self.statuses if st["index"] == index), None)
            if age is not None and age + silent > stall_s:
                out.append((index, f"its loop has not ticked for {age + silent:.0f}s"))
            elif silent > stall_s:
                out.append((index, f"it has not answered for {silent:.0f}s"))
        return out

    def replace_stalled(self, pending: list) -> bool:
        """Ends and replaces each ingest actor stuck for --ingest-stall-s (a Kafka call with no
        deadline of its own, or a stopped process), in `pending` too. False when one is stuck and
        the replacements are spent."""
        stall_s = self.s.ingest_stall_s or self.s.drain_timeout_s + 60.0
        for index, why in self.stalled(stall_s):
            ref = next((r for r in pending if self.runs.get(r) == index), None)
            if ref is None:
                continue
            pending.remove(ref)  # its end (killed) is not a second failure
            del self.runs[ref]
            self.statuses = [st for st in self.statuses if st["index"] != index]  # the old actor's
            self._answered_at.pop(index, None)
            new = self.replace(index, TimeoutError(f"{why} (--ingest-stall-s {stall_s:g})"), "stalled")
            if new is None:
                return False
            pending.append(new)
        return True

    def replace(self, index: int, error: BaseException, kind: str | None = None) -> Any | None:
        """A new ingest actor in place of index `index`, within --ingest-replacements: its run()
        ref, or None when they are spent. The replacement joins the group; the partitions of the one
        it replaces come back to the group when that one's session ends (or at once, when it left
        it), and their posts since the last commit are redone (at-least-once; exactly-once: the old
        transactions are fenced and aborted, so read_committed consumers see each post once)."""
        import ray

        if isinstance(error, KafkaAuthError):  # ray.get raises the actor's error as its cause's type too
            log.error("ingest %d: Kafka refused its credentials or TLS settings; a replacement would be "
                      "refused the same way, so none is started", index)
            return None
        if self.replacements >= self.s.ingest_replacements:
            log.error("ingest %d lost and --ingest-replacements (%d) spent", index, self.s.ingest_replacements)
            return None
        self.replacements += 1
        kind = kind or ("died" if isinstance(error, ray.exceptions.RayActorError) else "failed")
        cause = str(error).strip().splitlines()[-1][:300] if str(error).strip() else type(error).__name__
        log.error("ingest %d %s (%s); starting a replacement ingest actor (%d of --ingest-replacements %d)",
                  index, kind, cause, self.replacements, self.s.ingest_replacements)
        self.metrics.inc("lrsa_ingest_actor_replacements_total", kind=kind)
        try:
            ray.kill(self.actors[index])  # a loop that raised leaves its actor up: end it (and its consumer)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.actors[index] = self._new_actor(index)
        ref = self.actors[index].run.remote()
        self.runs[ref] = index
        return ref

    def report_final(self, status: dict[str, Any]) -> None:
        """Logged here, not only in the actor: an actor's log lines reach the driver's log
        asynchronously and can be cut off by the shutdown that follows."""
        self.final_statuses.append(status)
        log.info("ingest %d finished after %d posts", status["index"], status.get("consumed", 0))
        if status.get("refused"):
            log.error("ingest %d stopped with %d records the broker refused for good still unsent (see "
                      "lrsa_send_refused_total); their posts stay uncommitted and are redone after a restart",
                      status["index"], status["refused"])
        if status["left_uncommitted"]:
            log.warning("ingest %d stopped with %d posts unfinished after the drain timeout; left them "
                        "uncommitted (the partitions' next owner or a restart fetches them again)",
                        status["index"], status["left_uncommitted"])

    def set_paused(self, paused: bool) -> bool:
        """Pause or resume fetching on every actor; False when they did not all confirm within 5 s."""
        import ray

        try:
            ray.get([a.set_paused.remote(paused) for a in self.actors], timeout=5)
        except ray.exceptions.GetTimeoutError:
            return False
        return True

    def set_stage_actors(self, stage: str, handles: list) -> list:
        """Tell every ingest actor a stage pool's new actors; the refs of the calls."""
        return [a.set_stage_actors.remote(stage, handles) for a in self.actors]

    def stop_all(self) -> None:
        for a in self.actors:
            a.stop.remote()

    def kill_all(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)

    def collect_metrics(self) -> None:
        import ray

        try:
            for delta in ray.get([a.drain_metrics.remote() for a in self.actors], timeout=3):
                self.metrics.apply(delta)
        except Exception as e:  # an actor gone: its last second of metrics is lost, not the posts
            log.warning("metrics drain failed: %s", e)

    # ---- what the statuses add up to ----

    def per_stage(self, key: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for st in self.statuses:
            for stage, v in st.get(key, {}).items():
                total[stage] = total.get(stage, 0) + v
        return total

    def lag_total(self) -> float | None:
        if not self.statuses:
            return None
        return float(sum(st.get("lag", 0) for st in self.statuses))

    def busy_slot_s(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for st in self.statuses:
            for stage, v in st["busy_slot_s"].items():
                total[stage] = total.get(stage, 0.0) + v
        return total

    def quiet_for(self, min_idle_s: float) -> float | None:
        """Seconds since the last of them went idle, when every actor has answered and each has
        been idle for at least min_idle_s; else None."""
        if not self.statuses or len(self.statuses) < len(self.actors):
            return None  # not every ingest actor has answered yet
        if not all(not st["busy"] and st["idle_s"] >= min_idle_s for st in self.statuses):
            return None
        return min(st["idle_s"] for st in self.statuses)

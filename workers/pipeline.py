"""The `lrsa run` driver: starts Ray, the stage pools and the ingest actors, serves /metrics,
grows pools under load, and turns SIGTERM/SIGINT (or an idle input) into a graceful stop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from typing import Any

from workers.actor_start import Liveness, Starting, StartupError, await_started, check_placeable, poll_starting, \
    start_watch
from workers.config import WorkerSettings
from workers.ingest import STOP_RESERVE_S
from workers.member_id import MemberId, transactional_id
from workers.metrics import DriverMetrics, MetricsBuffer

log = logging.getLogger(__name__)


def init_ray(s: WorkerSettings) -> None:
    import os

    import ray

    if ray.is_initialized():
        return
    if s.ray_address:
        ray.init(address=s.ray_address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=s.ray_num_cpus or max(4, os.cpu_count() or 1),
                 include_dashboard=False, object_store_memory=256 * 1024 * 1024,
                 configure_logging=False, log_to_driver=True)


class Pools:
    """The stage actor pools, between min and max actors: one more while a stage's in-flight slots
    stay mostly in use, one fewer while they stay mostly idle. A new actor joins its pool only once
    it answered (workers/actor_start.py); one that is not placed or started within
    actor_start_timeout_s is dropped and reported, and the pool works on with what it has. A dead
    actor (Ray's restarts spent) leaves its pool and is replaced while the pool is below its min.
    Driver thread only."""

    GROW_AT = 0.75    # average share of the stage's in-flight slots in use over the grow window
    SHRINK_AT = 0.25  # ... and at most this over the (longer) shrink window

    def __init__(self, s: WorkerSettings) -> None:
        from workers import stage_settings
        from workers.stages import start_pool

        self.specs = {name: (path, lo, hi, gpus, cpus) for name, path, lo, hi, gpus, cpus in s.stage_settings()}
        self.metrics_host = s.metrics_host if s.stage_metrics else None
        self.gates = {name: s.stage_gate(name) for name in self.specs}  # the prescore's threshold
        # each processor's settings, built here and sent with every actor (workers/stage_settings.py)
        self.settings = {name: stage_settings.build(path, s) for name, (path, *_) in self.specs.items()}
        self.resources = {name: s.stage_resources(name) for name in self.specs}
        self.start_timeout_s = s.actor_start_timeout_s
        self.metrics = MetricsBuffer()  # drained into the driver's registry with the actors' buffers
        self.starting: dict[str, Starting] = {}     # an actor being added to the pool, not yet answered
        self.unplaced: dict[str, str] = {}          # stage -> why its last new actor did not start
        self._grow_after: dict[str, float] = {}     # no new grow attempt before this (after a failed start)
        self._liveness = Liveness()
        for name, (path, lo, hi, gpus, cpus) in self.specs.items():
            check_placeable(name, cpus, gpus, autoscaling=bool(s.ray_address))
        self.actors = {name: start_pool(name, path, lo, cpus, gpus, self.metrics_host, self.gates[name],
                                        self.settings[name], self.resources[name])
                       for name, (path, lo, hi, gpus, cpus) in self.specs.items()}
        self.occupancy: dict[str, float] = {}
        self.grow_after_s, self.shrink_after_s = s.pool_grow_after_s, s.pool_shrink_after_s
        self._windows: dict[str, tuple[OccupancyWindow, OccupancyWindow]] = {}

    def _new_actor(self, name: str):
        from workers.stages import new_actor

        path, lo, hi, gpus, cpus = self.specs[name]
        return new_actor(name, path, cpus, gpus, self.metrics_host, self.gates[name], self.settings[name],
                         self.resources[name])

    def log_metrics_ports(self, stop: threading.Event | None = None) -> None:
        """Waits (at most actor_start_timeout_s) for every actor to answer; StartupError if one does not."""
        for name, actors in self.actors.items():
            path, lo, hi, gpus, cpus = self.specs[name]
            ports = await_started(name, actors, self.start_timeout_s, cpus, gpus, stop)
            if any(ports):
                log.info("stage %s actors' own /metrics on %s ports %s", name, self.metrics_host, ports)

    def handles(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.actors.items()}

    def rescale(self, busy_slot_s: dict[str, float], capacity: int, now: float | None = None) -> str | None:
        """Grow or shrink at most one stage by one actor; returns its name.

        `busy_slot_s` is each stage's in-flight batches integrated over time (summed over the ingest
        actors), `capacity` the slots they have. Ray ends a removed actor once the ingest actors
        drop their handles to it; a batch it still held then is retried like any actor failure."""
        now = time.monotonic() if now is None else now
        changed = None
        for name, (path, lo, hi, gpus, cpus) in self.specs.items():
            grow, shrink = self._windows.setdefault(
                name, (OccupancyWindow(self.grow_after_s), OccupancyWindow(self.shrink_after_s)))
            share = grow.add(now, busy_slot_s.get(name, 0.0), capacity)
            idle_share = shrink.add(now, busy_slot_s.get(name, 0.0), capacity)
            if share is None:
                continue
            self.occupancy[name] = share
            if changed is not None:
                continue
            pool = self.actors[name]
            if (grow.full() and share >= self.GROW_AT and len(pool) < hi and name not in self.starting
                    and now >= self._grow_after.get(name, 0.0)):
                self.starting[name] = start_watch(self._new_actor(name))
                verb, over = "growing (the new actor joins once it answers)", self.grow_after_s
            elif shrink.full() and idle_share is not None and idle_share <= self.SHRINK_AT and len(pool) > lo:
                self._liveness.forget(pool.pop())
                verb, over, share = "shrunk", self.shrink_after_s, idle_share
            else:
                continue
            grow.clear()  # judge the new pool size on its own windows
            shrink.clear()
            log.info("stage %s slots %.0f%% in use over %.0fs: pool %s to %d", name, 100 * share, over, verb,
                     len(pool) + (name in self.starting))
            changed = name
        return changed

    def tend(self) -> set[str]:
        """Non-blocking, every supervise tick: a started actor joins its pool; one that did not start
        in time is dropped and reported; dead actors leave and are replaced up to the pool's min.
        Returns the stages whose actor lists changed."""
        changed: set[str] = set()
        now = time.monotonic()
        for name, starting in list(self.starting.items()):
            state, why = poll_starting(name, starting, self.start_timeout_s)
            if state == "ready":
                self.actors[name].append(starting.actor)
                del self.starting[name]
                self.unplaced.pop(name, None)
                self.metrics.set("lrsa_stage_actors_unplaced", 0, stage=name)
                log.info("stage %s: new actor up; pool now %d", name, len(self.actors[name]))
                changed.add(name)
            elif state == "failed":
                del self.starting[name]
                self.unplaced[name] = why
                self._grow_after[name] = now + self.start_timeout_s
                self.metrics.inc("lrsa_stage_actor_failures_total", stage=name, kind="not_started")
                self.metrics.set("lrsa_stage_actors_unplaced", 1, stage=name)
                log.error("stage %s: a new actor %s; the pool keeps working with its %d actor(s)",
                          name, why, len(self.actors[name]))
        for name, pool in self.actors.items():
            for dead in self._liveness.dead(pool):
                pool.remove(dead)
                self._liveness.forget(dead)
                self.metrics.inc("lrsa_stage_actor_failures_total", stage=name, kind="died")
                log.error("stage %s: an actor died for good (Ray's restarts spent); pool now %d", name, len(pool))
                changed.add(name)
            path, lo, hi, gpus, cpus = self.specs[name]
            if len(pool) < lo and name not in self.starting:
                log.info("stage %s: below its min (%d < %d): starting a replacement", name, len(pool), lo)
                self.starting[name] = start_watch(self._new_actor(name))
        return changed

    def status(self) -> dict[str, Any]:
        return {name: {"actors": len(pool), "starting": name in self.starting, "unplaced": self.unplaced.get(name)}
                for name, pool in self.actors.items()}


class OccupancyWindow:
    """The average share of in-flight slots in use over the last `span_s`, from samples of a running
    integral (slot-seconds), so a sample caught between one batch and the next does not reset it."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, busy_slot_s: float, capacity: int) -> float | None:
        self._samples.append((now, busy_slot_s))
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.span_s:
            self._samples.popleft()  # keep the newest sample that is at least a span old
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or capacity <= 0:
            return None
        return min(1.0, max(0.0, (v1 - v0) / (t1 - t0) / capacity))

    def full(self) -> bool:
        """The samples span the whole window."""
        return len(self._samples) > 1 and self._samples[-1][0] - self._samples[0][0] >= self.span_s

    def clear(self) -> None:
        self._samples.clear()


class Pipeline:
    def __init__(self, s: WorkerSettings, metrics: DriverMetrics | None = None) -> None:
        self.s = s
        self.metrics = metrics or DriverMetrics()
        self.stop_requested = threading.Event()
        self.stop_requested_at: float | None = None  # monotonic; set by the signal handler before the Event
        self.statuses: list[dict[str, Any]] = []        # latest status of each ingest actor
        self.final_statuses: list[dict[str, Any]] = []  # what each ingest actor's run() returned
        self.metrics_port: int | None = None
        self._group_lag = None

    def run(self) -> int:
        import ray

        from workers.ingest import IngestActor

        s = self.s
        init_ray(s)
        # Counters the alert rules compare (LrsaNoOutput, LrsaCommitStalled) exist from the first scrape.
        self.metrics.zero("lrsa_posts_consumed_total", topic=s.input_topic)
        self.metrics.zero("lrsa_posts_emitted_total", topic=s.output_topic)
        self.metrics.zero("lrsa_commits_total", mode="transaction" if s.exactly_once else "offsets")
        if s.metrics_port is not None:
            self.metrics_port = self.metrics.serve(s.metrics_host, s.metrics_port)
            log.info("metrics at http://%s:%d/metrics", s.metrics_host, self.metrics_port)
        try:
            pools = Pools(s)
            pools.log_metrics_ports(self.stop_requested)
        except StartupError as e:
            log.error("cannot start: %s", e)
            return 2
        self.pools = pools
        # exactly-once: this driver's identity in the group, the base of its transactional ids
        member = MemberId(s.group_id, s.instance_id) if s.exactly_once else None
        settings = {**s.model_dump(), "instance_id": member.instance if member else s.instance_id}
        actor_cls = ray.remote(IngestActor).options(num_cpus=s.ingest_num_cpus, max_concurrency=4)
        self.actors = [actor_cls.remote(settings, i, pools.handles()) for i in range(s.ingest_actors)]
        runs = {a.run.remote(): a for a in self.actors}
        log.info("pipeline up: %d ingest actors, stages %s%s", len(self.actors),
                 {k: len(v) for k, v in pools.actors.items()} or "none (pass-through)",
                 f", transactional ids {transactional_id(s.group_id, member.instance, 0)}.." if member else "")
        try:
            return self._supervise(runs, pools)
        finally:
            if member is not None:
                member.release()
            self._collect_metrics()
            if self._group_lag is not None:
                self._group_lag.close()

    def _supervise(self, runs: dict, pools: Pools) -> int:
        import ray

        stopping = False
        stop_by = float("inf")  # once stopping: when the driver ends the ingest actors itself
        idle_since: float | None = None
        pending = list(runs)
        while pending:
            if time.monotonic() >= stop_by:
                log.error("%d ingest actor(s) not stopped within --stop-grace-s %gs; ending them (their "
                          "uncommitted posts are redone after a restart)", len(pending), self.s.stop_grace_s)
                for a in self.actors:
                    ray.kill(a)
                return 1
            done, pending = ray.wait(pending, num_returns=len(pending),
                                     timeout=max(0.01, min(self.s.metrics_interval_s, stop_by - time.monotonic())))
            for ref in done:
                try:
                    self._report_final(ray.get(ref))
                except Exception:
                    log.exception("an ingest actor failed; stopping (uncommitted work is redone on restart)")
                    self._stop_all()
                    return 1
            if stopping:
                continue
            self._collect_metrics()
            try:
                self.statuses = ray.get([a.status.remote() for a in self.actors], timeout=30)
            except ray.exceptions.GetTimeoutError:
                log.warning("ingest actors' status not in within 30s; asking again")
            grown_or_shrunk = pools.rescale(self._busy_slot_s(), self.s.max_inflight_batches * len(self.actors))
            for changed in pools.tend() | ({grown_or_shrunk} - {None}):
                for a in self.actors:
                    a.set_stage_actors.remote(changed, pools.actors[changed])
            self.metrics.apply(pools.metrics.drain())
            for name, actors in pools.actors.items():
                self.metrics.set("lrsa_actor_pool_size", len(actors), stage=name)
                if name in pools.occupancy:
                    self.metrics.set("lrsa_stage_slot_occupancy", pools.occupancy[name], stage=name)
            idle_since = self._idle_since(idle_since)
            if self.stop_requested.is_set() or (idle_since is not None
                                                and time.monotonic() - idle_since >= self.s.exit_when_idle):
                log.info("stopping: %s", "signal" if self.stop_requested.is_set() else "input drained and idle")
                self._stop_all()
                stopping = True
                since = self.stop_requested_at if self.stop_requested.is_set() else None
                stop_by = (since or time.monotonic()) + max(self.s.stop_grace_s - STOP_RESERVE_S + 2.0,
                                                            self.s.stop_grace_s * 0.6)
        return 0

    def _report_final(self, status: dict[str, Any]) -> None:
        """Logged here, not only in the actor: an actor's log lines reach the driver's log
        asynchronously and can be cut off by the shutdown that follows."""
        self.final_statuses.append(status)
        if status.get("refused"):
            log.error("ingest %d stopped with %d records the broker refused for good still unsent (see "
                      "lrsa_send_refused_total); their posts stay uncommitted and are redone after a restart",
                      status["index"], status["refused"])
        if status["left_uncommitted"]:
            log.warning("ingest %d stopped with %d posts unfinished after the drain timeout; left them "
                        "uncommitted (the partitions' next owner or a restart fetches them again)",
                        status["index"], status["left_uncommitted"])

    def _busy_slot_s(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for st in self.statuses:
            for stage, v in st["busy_slot_s"].items():
                total[stage] = total.get(stage, 0.0) + v
        return total

    def _idle_since(self, since: float | None) -> float | None:
        if self.s.exit_when_idle is None:
            return None
        quiet = all(not st["busy"] and st["idle_s"] >= self.s.metrics_interval_s for st in self.statuses)
        if not quiet or not self._group_drained():
            return None
        return since or time.monotonic() - min(st["idle_s"] for st in self.statuses)

    def _group_drained(self) -> bool:
        """Every partition of the input committed up to its end (asked of the broker, not the members)."""
        from workers.kafka_io import GroupLag

        try:
            if self._group_lag is None:
                self._group_lag = GroupLag(self.s, self.s.input_topic, self.s.group_id)
            return sum(self._group_lag.lag().values()) == 0
        except Exception as e:  # broker hiccup: not drained as far as we know
            log.debug("group lag unavailable: %s", e)
            return False

    def _stop_all(self) -> None:
        for a in self.actors:
            a.stop.remote()

    def _collect_metrics(self) -> None:
        import ray

        try:
            for delta in ray.get([a.drain_metrics.remote() for a in self.actors], timeout=3):
                self.metrics.apply(delta)
        except Exception as e:  # an actor gone: its last second of metrics is lost, not the posts
            log.warning("metrics drain failed: %s", e)


def run_worker(s: WorkerSettings) -> int:
    """Entry of `lrsa run`: signals request a graceful stop; a second signal exits at once."""
    pipeline = Pipeline(s)

    def on_signal(signum, _frame):
        if pipeline.stop_requested.is_set():
            raise KeyboardInterrupt
        log.info("%s: draining in-flight work, committing, closing (within --stop-grace-s %gs)",
                 signal.Signals(signum).name, s.stop_grace_s)
        pipeline.stop_requested_at = time.monotonic()
        pipeline.stop_requested.set()

    try:
        init_ray(s)  # first: Ray installs its own SIGTERM handler, which ours must replace
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        return pipeline.run()
    finally:
        import ray

        pipeline.metrics.close()
        ray.shutdown()

"""The `lrsa run` driver: starts Ray, the stage pools (pools.py) and the ingest actors
(ingest_fleet.py), serves /metrics and the control endpoint (control_plane.py), supervises them
tick by tick, and turns SIGTERM/SIGINT, POST /drain or an idle input (idle_exit.py) into a
graceful stop.

Thread rules: the supervise loop (the driver's main thread) owns the pools, the ingest actors'
statuses and the autoscaler. The control endpoint's thread only reads the snapshot the loop
publishes each tick and queues requests the loop answers; the signal handler only sets an Event."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from workers.config import WorkerSettings, parse_resources
from workers.driver.control import ControlState
from workers.driver.control_plane import ControlPlane
from workers.driver.idle_exit import IdleExit
from workers.driver.ingest_fleet import IngestFleet
from workers.driver.metrics_sd import TargetsFile
from workers.driver.pools import Pools
from workers.ingest.actor import STOP_RESERVE_S
from workers.ingest.member_id import MemberId, transactional_id
from workers.kafka_clients.preflight import check_kafka
from workers.metrics import DriverMetrics
from workers.stages.actor_start import StartupError

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


class Pipeline:
    """The supervise loop and what it composes: the stage pools (Pools), the ingest actors
    (IngestFleet), the control endpoint (ControlPlane), the idle exit (IdleExit), the driver's
    /metrics and the metrics targets file."""

    def __init__(self, s: WorkerSettings, metrics: DriverMetrics | None = None) -> None:
        self.s = s
        self.metrics = metrics or DriverMetrics()
        self.stop_requested = threading.Event()
        self.stop_requested_at: float | None = None  # monotonic; set by the signal handler before the Event
        self.metrics_port: int | None = None
        self.targets_file = TargetsFile(s.metrics_sd_file) if s.metrics_sd_file else None
        self.control_plane = ControlPlane(s)
        self.fleet: IngestFleet | None = None
        self.paused = False          # consumption paused by an operator (POST /pause)
        self.stop_reason = "signal"  # or "drain" (POST /drain)

    @property
    def control(self) -> ControlState:
        return self.control_plane.state

    @property
    def statuses(self) -> list[dict[str, Any]]:
        """The latest status of each ingest actor."""
        return self.fleet.statuses if self.fleet else []

    @property
    def final_statuses(self) -> list[dict[str, Any]]:
        """What each ingest actor's run() returned."""
        return self.fleet.final_statuses if self.fleet else []

    def run(self) -> int:
        s = self.s
        init_ray(s)
        # Every counter the panels and alert rules read exists from the first scrape (LrsaNoOutput and
        # LrsaCommitStalled compare two of them).
        self.metrics.zero_known([st.name for st in s.stage_settings()], s.input_topic, s.output_topic,
                                "transaction" if s.exactly_once else "offsets")
        if s.metrics_port is not None:
            self.metrics_port = self.metrics.serve(s.metrics_host, s.metrics_port)
            log.info("metrics at http://%s:%d/metrics", s.metrics_host, self.metrics_port)
        if not self.control_plane.start():
            return 2
        try:
            return self._start(s)
        finally:
            self.control_plane.close()

    def _start(self, s: WorkerSettings) -> int:
        import ray

        from workers.ingest.actor import IngestActor

        try:
            pools = Pools(s)
            pools.log_metrics_ports(self.stop_requested)
        except StartupError as e:
            log.error("cannot start: %s", e)
            return 2
        self.pools = pools
        self.control_plane.restore_bounds(pools)
        # exactly-once or static membership: this driver's identity in the group, the base of its
        # transactional ids and group instance ids
        member = MemberId(s.group_id, s.instance_id) if s.exactly_once or s.static_membership else None
        # what the ingest actors get: the password itself, not the driver's file (they may run elsewhere)
        settings = {**s.model_dump(), **s.inline_secrets(), "instance_id": member.instance if member else s.instance_id}
        placement = {"resources": parse_resources(s.ingest_resources)} if s.ingest_resources else {}
        actor_cls = ray.remote(IngestActor).options(num_cpus=s.ingest_num_cpus, max_concurrency=4, **placement)
        # index i's transactional ids are the same for a replacement, which so fences the one it replaces
        self.fleet = IngestFleet(s, self.metrics, lambda i: actor_cls.remote(settings, i, pools.handles()))
        pending = self.fleet.start()
        log.info("pipeline up: %d ingest actors, stages %s%s", len(self.fleet.actors),
                 {k: len(v) for k, v in pools.actors.items()} or "none (pass-through)",
                 f", transactional ids {transactional_id(s.group_id, member.instance, 0)}.." if member else "")
        idle = IdleExit(s)
        try:
            return self._supervise(pending, pools, idle)
        finally:
            if member is not None:
                member.release()
            self.fleet.collect_metrics()
            idle.close()

    def _supervise(self, pending: list, pools: Pools, idle: IdleExit) -> int:
        import ray

        fleet = self.fleet
        stopping = False
        stop_by = float("inf")  # once stopping: when the driver ends the ingest actors itself
        while pending:
            if time.monotonic() >= stop_by:
                log.error("%d ingest actor(s) not stopped within --stop-grace-s %gs; ending them (their "
                          "uncommitted posts are redone after a restart)", len(pending), self.s.stop_grace_s)
                fleet.kill_all()
                return 1
            done, pending = ray.wait(pending, num_returns=len(pending),
                                     timeout=max(0.01, min(self.s.metrics_interval_s, stop_by - time.monotonic())))
            for ref in done:
                try:
                    fleet.report_final(ray.get(ref))
                except Exception as e:  # noqa: BLE001 - the actor died, or its loop raised
                    new = None if stopping else fleet.replace(fleet.runs[ref], e)
                    if new is not None:
                        pending.append(new)
                        continue
                    log.exception("an ingest actor failed; stopping (uncommitted work is redone on restart)")
                    fleet.stop_all()
                    return 1
            if stopping:
                self.control_plane.refuse()
                continue
            fleet.collect_metrics()
            fleet.refresh_statuses()
            if not fleet.replace_stalled(pending):
                fleet.stop_all()
                return 1
            pools.finish_draining(fleet.statuses)
            grown_or_shrunk = pools.rescale(fleet.busy_slot_s(), self.s.max_inflight_batches * len(fleet.actors),
                                            inflight=fleet.per_stage("inflight"), queued=fleet.per_stage("queued"),
                                            lag=fleet.lag_total())
            for changed in pools.tend() | ({grown_or_shrunk} - {None}):
                pools.retiring(changed, fleet.set_stage_actors(changed, pools.actors[changed]))
            self.control_plane.answer(pools, self._set_paused, self._drain)
            self._pool_metrics(pools)
            self._write_targets(pools)
            self.control_plane.publish(pools, fleet.statuses, self.paused)
            if self.stop_requested.is_set() or idle.due(fleet):
                log.info("stopping: %s", self.stop_reason if self.stop_requested.is_set()
                         else "input drained and idle")
                self.control.set_phase("stopping")
                fleet.stop_all()
                stopping = True
                since = self.stop_requested_at if self.stop_requested.is_set() else None
                stop_by = (since or time.monotonic()) + max(self.s.stop_grace_s - STOP_RESERVE_S + 2.0,
                                                            self.s.stop_grace_s * 0.6)
        return 0

    def _set_paused(self, paused: bool) -> tuple[int, dict[str, Any]]:
        if not self.fleet.set_paused(paused):
            return 503, {"error": "the ingest actors did not confirm within 5s; ask again"}
        self.paused = paused
        log.info("consumption %s (control endpoint)", "paused" if paused else "resumed")
        return 200, {"paused": paused}

    def _drain(self) -> tuple[int, dict[str, Any]]:
        self.stop_reason = "drain requested (control endpoint)"
        self.stop_requested_at = time.monotonic()
        self.stop_requested.set()
        return 202, {"draining": True, "stop_grace_s": self.s.stop_grace_s}

    def _write_targets(self, pools: Pools) -> None:
        """The metrics targets file (--metrics-sd-file), rewritten when the actors changed."""
        if self.targets_file is None:
            return
        try:
            if self.targets_file.update(self.s.metrics_host, self.metrics_port, pools.metrics_targets()):
                log.info("metrics targets written to %s", self.targets_file.path)
        except OSError as e:  # a full disk or a wrong path must not stop the stream
            log.warning("cannot write the metrics targets file %s: %s", self.targets_file.path, e)

    def _pool_metrics(self, pools: Pools) -> None:
        self.metrics.apply(pools.metrics.drain())
        self.metrics.set("lrsa_consumption_paused", int(self.paused))
        for name, actors in pools.actors.items():
            self.metrics.set("lrsa_actor_pool_size", len(actors), stage=name)
            if name in pools.occupancy:
                self.metrics.set("lrsa_stage_slot_utilisation_ratio", pools.occupancy[name], stage=name)
            self.metrics.set("lrsa_stage_queued_batches", pools.loads[name].queued, stage=name)
            work = pools.autoscaler.readings.get(name, {}).get("work_per_actor")
            if work is not None:
                self.metrics.set("lrsa_stage_work_per_actor", work, stage=name)


def run_worker(s: WorkerSettings) -> int:
    """Entry of `lrsa run`: signals request a graceful stop; a second signal exits at once."""
    # a wrong address or refused login is a configuration error, said before Ray or any actor starts
    if check_kafka(s, [s.input_topic]):
        log.warning("input topic %s does not exist on %s yet: the worker waits for it (a broker with "
                    "auto.create.topics.enable creates it with the first post; otherwise create it: "
                    "`lrsa stack up --kafka-topics %s`)", s.input_topic, s.bootstrap_servers, s.input_topic)
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

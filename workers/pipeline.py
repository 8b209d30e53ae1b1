"""The `lrsa run` driver: starts Ray, the stage pools and the ingest actors, serves /metrics and
the control endpoint (workers/control.py), sizes the pools (workers/pools.py), and turns
SIGTERM/SIGINT, POST /drain or an idle input into a graceful stop.

Thread rules: the supervise loop (the driver's main thread) owns the pools, the ingest actors'
statuses and the autoscaler. The control endpoint's thread only reads the snapshot the loop
publishes each tick and queues requests the loop answers; the signal handler only sets an Event."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from workers.actor_start import StartupError
from workers.config import WorkerSettings, parse_resources
from workers.control import ControlServer, ControlState
from workers.ingest import STOP_RESERVE_S
from workers.kafka_preflight import check_kafka
from workers.member_id import MemberId, transactional_id
from workers.metrics import DriverMetrics
from workers.metrics_sd import TargetsFile
from workers.pools import Pools

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
    def __init__(self, s: WorkerSettings, metrics: DriverMetrics | None = None) -> None:
        self.s = s
        self.metrics = metrics or DriverMetrics()
        self.stop_requested = threading.Event()
        self.stop_requested_at: float | None = None  # monotonic; set by the signal handler before the Event
        self.statuses: list[dict[str, Any]] = []        # latest status of each ingest actor
        self.final_statuses: list[dict[str, Any]] = []  # what each ingest actor's run() returned
        self.metrics_port: int | None = None
        self.targets_file = TargetsFile(s.metrics_sd_file) if s.metrics_sd_file else None
        self._group_lag = None
        self.control = ControlState(stale_after_s=max(30.0, 10 * s.metrics_interval_s))
        self.control_port: int | None = None
        self._control_server: ControlServer | None = None
        self.paused = False          # consumption paused by an operator (POST /pause)
        self.stop_reason = "signal"  # or "drain" (POST /drain)
        self._replacements = 0       # ingest actors replaced so far (--ingest-replacements)
        self._answered_at: dict[int, float] = {}  # ingest actor index -> when its status last came in

    def _start_control(self) -> bool:
        """The control endpoint; False when its settings are wrong (the worker does not start). A port
        that is taken is reported and the worker runs without the endpoint."""
        from workers.control_settings import is_loopback

        s = self.s
        if s.control_port is None or not s.control_endpoint:
            log.info("control endpoint off (--no-control-endpoint): no /healthz, /readyz, /status")
            return True
        try:
            token = s.token()
        except (OSError, ValueError) as e:
            log.error("cannot start: control token unreadable (--control-token-file): %s", e)
            return False
        if token is None and not is_loopback(s.control_host):
            log.error("cannot start: the control endpoint on %s (--control-host) is not loopback and has no token: "
                      "set --control-token-file or LRSA_CONTROL_TOKEN", s.control_host)
            return False
        try:
            tls = s.tls_context()
        except (OSError, ValueError) as e:
            log.error("cannot start: control endpoint TLS (--control-tls-certfile/--control-tls-keyfile): %s", e)
            return False
        if token is not None and tls is None and not is_loopback(s.control_host):
            log.warning("the control endpoint on %s serves plain HTTP: its bearer token crosses the network in "
                        "clear; set --control-tls-certfile and --control-tls-keyfile", s.control_host)
        server = ControlServer(self.control, s.control_host, s.control_port, token, tls)
        try:
            self.control_port = server.start()
        except OSError as e:
            log.error("control endpoint not served: cannot bind %s:%s (--control-port / LRSA_CONTROL_PORT): %s; "
                      "running without it", s.control_host, s.control_port, e)
            return True
        self._control_server = server
        log.info("control endpoint at %s://%s:%d (%s)", "https" if tls else "http", s.control_host, self.control_port,
                 "token required for /status and POSTs" if token else "no token: loopback callers are trusted")
        return True

    def run(self) -> int:
        s = self.s
        init_ray(s)
        # Counters the alert rules compare (LrsaNoOutput, LrsaCommitStalled) exist from the first scrape.
        self.metrics.zero("lrsa_posts_consumed_total", topic=s.input_topic)
        self.metrics.zero("lrsa_posts_emitted_total", topic=s.output_topic)
        self.metrics.zero("lrsa_commits_total", mode="transaction" if s.exactly_once else "offsets")
        if s.metrics_port is not None:
            self.metrics_port = self.metrics.serve(s.metrics_host, s.metrics_port)
            log.info("metrics at http://%s:%d/metrics", s.metrics_host, self.metrics_port)
        if not self._start_control():
            return 2
        try:
            return self._start(s)
        finally:
            self.control.set_phase("stopped")
            if self._control_server is not None:
                self._control_server.close()

    def _start(self, s: WorkerSettings) -> int:
        import ray

        from workers.ingest import IngestActor

        try:
            pools = Pools(s)
            pools.log_metrics_ports(self.stop_requested)
        except StartupError as e:
            log.error("cannot start: %s", e)
            return 2
        self.pools = pools
        self._restore_bounds(pools)
        # exactly-once: this driver's identity in the group, the base of its transactional ids
        member = MemberId(s.group_id, s.instance_id) if s.exactly_once else None
        # what the ingest actors get: the password itself, not the driver's file (they may run elsewhere)
        settings = {**s.model_dump(), **s.inline_secrets(), "instance_id": member.instance if member else s.instance_id}
        placement = {"resources": parse_resources(s.ingest_resources)} if s.ingest_resources else {}
        actor_cls = ray.remote(IngestActor).options(num_cpus=s.ingest_num_cpus, max_concurrency=4, **placement)
        # index i's transactional ids are the same for a replacement, which so fences the one it replaces
        self._new_ingest = lambda i: actor_cls.remote(settings, i, pools.handles())
        self.actors = [self._new_ingest(i) for i in range(s.ingest_actors)]
        runs = {a.run.remote(): i for i, a in enumerate(self.actors)}
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

    def _write_targets(self, pools: Pools) -> None:
        """The metrics targets file (--metrics-sd-file), rewritten when the actors changed."""
        if self.targets_file is None:
            return
        try:
            if self.targets_file.update(self.s.metrics_host, self.metrics_port, pools.metrics_targets()):
                log.info("metrics targets written to %s", self.targets_file.path)
        except OSError as e:  # a full disk or a wrong path must not stop the stream
            log.warning("cannot write the metrics targets file %s: %s", self.targets_file.path, e)

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
                except Exception as e:  # noqa: BLE001 - the actor died, or its loop raised
                    if not stopping and self._replace_ingest(runs, runs[ref], e):
                        pending.append(next(reversed(runs)))
                        continue
                    log.exception("an ingest actor failed; stopping (uncommitted work is redone on restart)")
                    self._stop_all()
                    return 1
            if stopping:
                self._refuse_requests()
                continue
            self._collect_metrics()
            self._refresh_statuses()
            if not self._replace_stalled(runs, pending):
                self._stop_all()
                return 1
            pools.finish_draining(self.statuses)
            grown_or_shrunk = pools.rescale(self._busy_slot_s(), self.s.max_inflight_batches * len(self.actors),
                                            inflight=self._per_stage("inflight"), queued=self._per_stage("queued"),
                                            lag=self._lag_total())
            for changed in pools.tend() | ({grown_or_shrunk} - {None}):
                pools.retiring(changed, [a.set_stage_actors.remote(changed, pools.actors[changed])
                                         for a in self.actors])
            self._answer_requests(pools)
            self._pool_metrics(pools)
            self._write_targets(pools)
            self._publish(pools)
            idle_since = self._idle_since(idle_since)
            if self.stop_requested.is_set() or (idle_since is not None
                                                and time.monotonic() - idle_since >= self.s.exit_when_idle):
                log.info("stopping: %s", self.stop_reason if self.stop_requested.is_set()
                         else "input drained and idle")
                self.control.set_phase("stopping")
                self._stop_all()
                stopping = True
                since = self.stop_requested_at if self.stop_requested.is_set() else None
                stop_by = (since or time.monotonic()) + max(self.s.stop_grace_s - STOP_RESERVE_S + 2.0,
                                                            self.s.stop_grace_s * 0.6)
        return 0

    def _refresh_statuses(self, wait_s: float = 5.0) -> None:
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

    def _stalled(self, stall_s: float) -> list[tuple[int, str]]:
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

    def _replace_stalled(self, runs: dict, pending: list) -> bool:
        """Ends and replaces each ingest actor stuck for --ingest-stall-s (a Kafka call with no
        deadline of its own, or a stopped process). False when one is stuck and the replacements
        are spent."""
        stall_s = self.s.ingest_stall_s or self.s.drain_timeout_s + 60.0
        for index, why in self._stalled(stall_s):
            ref = next((r for r in pending if runs.get(r) == index), None)
            if ref is None:
                continue
            pending.remove(ref)  # its end (killed) is not a second failure
            del runs[ref]
            self.statuses = [st for st in self.statuses if st["index"] != index]  # the old actor's
            self._answered_at.pop(index, None)
            if not self._replace_ingest(runs, index, TimeoutError(f"{why} (--ingest-stall-s {stall_s:g})"),
                                        "stalled"):
                return False
            pending.append(next(reversed(runs)))
        return True

    def _replace_ingest(self, runs: dict, index: int, error: BaseException, kind: str | None = None) -> bool:
        """A new ingest actor in place of index `index`, within --ingest-replacements; False when
        they are spent. The replacement joins the group; the partitions of the one it replaces come
        back to the group when that one's session ends (or at once, when it left it), and their
        posts since the last commit are redone (at-least-once; exactly-once: the old transactions
        are fenced and aborted, so read_committed consumers see each post once)."""
        import ray

        from workers.kafka_security import KafkaAuthError

        if isinstance(error, KafkaAuthError):  # ray.get raises the actor's error as its cause's type too
            log.error("ingest %d: Kafka refused its credentials or TLS settings; a replacement would be "
                      "refused the same way, so none is started", index)
            return False
        if self._replacements >= self.s.ingest_replacements:
            log.error("ingest %d lost and --ingest-replacements (%d) spent", index, self.s.ingest_replacements)
            return False
        self._replacements += 1
        kind = kind or ("died" if isinstance(error, ray.exceptions.RayActorError) else "failed")
        cause = str(error).strip().splitlines()[-1][:300] if str(error).strip() else type(error).__name__
        log.error("ingest %d %s (%s); starting a replacement ingest actor (%d of --ingest-replacements %d)",
                  index, kind, cause, self._replacements, self.s.ingest_replacements)
        self.metrics.inc("lrsa_ingest_actor_replacements_total", kind=kind)
        old = self.actors[index]
        try:
            ray.kill(old)  # a loop that raised leaves its actor up: end it (and its consumer)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.actors[index] = self._new_ingest(index)
        runs[self.actors[index].run.remote()] = index
        return True

    def _report_final(self, status: dict[str, Any]) -> None:
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

    # ---- the control endpoint's requests and snapshot (this thread) ----

    def _answer_requests(self, pools: Pools) -> None:
        for kind, args, future in self.control.take_requests():
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up waiting: not applied
            try:
                if kind == "resize":
                    answer = pools.resize(args["stage"], args.get("min"), args.get("max"))
                    if answer[0] == 200:
                        self._keep_bounds(pools)
                elif kind in ("pause", "resume"):
                    answer = self._set_paused(kind == "pause")
                elif kind == "drain":
                    self.stop_reason = "drain requested (control endpoint)"
                    self.stop_requested_at = time.monotonic()
                    self.stop_requested.set()
                    answer = (202, {"draining": True, "stop_grace_s": self.s.stop_grace_s})
                else:
                    answer = (400, {"error": f"unknown request {kind}"})
            except Exception as e:  # noqa: BLE001 - answered, never raised into the loop
                log.exception("control request %s failed", kind)
                answer = (500, {"error": f"{type(e).__name__}: {e}"})
            future.set_result(answer)

    def _restore_bounds(self, pools: Pools) -> None:
        """Bounds an operator set before a restart (--control-bounds-file) win over the flags."""
        from workers import control_bounds

        for stage, (lo, hi) in control_bounds.load(self.s.control_bounds_file).items():
            status, body = pools.resize(stage, lo, hi)
            if status == 200:
                log.info("stage %s: bounds %d:%d kept from %s", stage, lo, hi, self.s.control_bounds_file)
            else:
                log.warning("stage %s: bounds in %s not applied: %s", stage, self.s.control_bounds_file,
                            body.get("error"))

    def _keep_bounds(self, pools: Pools) -> None:
        from workers import control_bounds

        if self.s.control_bounds_file is None:
            return
        try:
            control_bounds.save(self.s.control_bounds_file, dict(pools.bounds))
        except OSError as e:
            log.error("pool bounds not kept in %s (--control-bounds-file): %s; a restart goes back to the "
                      "flags' bounds", self.s.control_bounds_file, e)

    def _refuse_requests(self) -> None:
        for _, _, future in self.control.take_requests():
            if future.set_running_or_notify_cancel():
                future.set_result((503, {"error": "the worker is stopping"}))

    def _set_paused(self, paused: bool) -> tuple[int, dict[str, Any]]:
        import ray

        try:
            ray.get([a.set_paused.remote(paused) for a in self.actors], timeout=5)
        except ray.exceptions.GetTimeoutError:
            return 503, {"error": "the ingest actors did not confirm within 5s; ask again"}
        self.paused = paused
        log.info("consumption %s (control endpoint)", "paused" if paused else "resumed")
        return 200, {"paused": paused}

    def _pool_metrics(self, pools: Pools) -> None:
        self.metrics.apply(pools.metrics.drain())
        self.metrics.set("lrsa_consumption_paused", int(self.paused))
        for name, actors in pools.actors.items():
            self.metrics.set("lrsa_actor_pool_size", len(actors), stage=name)
            if name in pools.occupancy:
                self.metrics.set("lrsa_stage_slot_occupancy", pools.occupancy[name], stage=name)
            self.metrics.set("lrsa_stage_queued_batches", pools.loads[name].queued, stage=name)
            work = pools.autoscaler.readings.get(name, {}).get("work_per_actor")
            if work is not None:
                self.metrics.set("lrsa_stage_work_per_actor", work, stage=name)

    def _publish(self, pools: Pools) -> None:
        lag: dict[str, int] = {}
        for st in self.statuses:
            lag.update(st.get("lag_by_partition", {}))
        ingest = [{k: st.get(k) for k in ("index", "assigned", "paused_partitions", "consumed", "lag", "busy",
                                          "paused_by_operator", "inflight", "queued")} for st in self.statuses]
        status = {"input_topic": self.s.input_topic, "group_id": self.s.group_id, "paused": self.paused,
                  "pools": pools.describe(), "ingest": ingest, "lag": lag, "lag_total": sum(lag.values()),
                  "lag_trend_posts_per_s": pools.autoscaler.lag_slope, "decisions": pools.autoscaler.recent()}
        placed, why = pools.placed()
        if self.paused:
            ready = (False, "consumption paused by an operator (POST /resume)")
        elif not placed:
            ready = (False, why)
        elif not any(st.get("assigned") for st in self.statuses):
            ready = (False, "no input partition assigned yet")
        else:
            ready = (True, "consuming")
        self.control.publish(status, ready)

    def _per_stage(self, key: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for st in self.statuses:
            for stage, v in st.get(key, {}).items():
                total[stage] = total.get(stage, 0) + v
        return total

    def _lag_total(self) -> float | None:
        if not self.statuses:
            return None
        return float(sum(st.get("lag", 0) for st in self.statuses))

    def _busy_slot_s(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for st in self.statuses:
            for stage, v in st["busy_slot_s"].items():
                total[stage] = total.get(stage, 0.0) + v
        return total

    def _idle_since(self, since: float | None) -> float | None:
        if self.s.exit_when_idle is None:
            return None
        if len(self.statuses) < len(self.actors):
            return None  # not every ingest actor has answered yet
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

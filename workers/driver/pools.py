"""The stage actor pools of the driver, sized by the autoscaler (workers/driver/autoscaler.py).

A new actor joins its pool only once it answered (workers/stages/actor_start.py); one that is not placed
or started within actor_start_timeout_s is dropped and reported, and the pool works on with what
it has. A dead actor (Ray's restarts spent) leaves its pool and is replaced while the pool is below
its min. An actor the pool scales down first leaves the ingest actors' lists (no new batch goes to
it), then drains: it ends only once every ingest actor confirmed the new list and reports no batch
left on it (or after drain_timeout_s, when a batch still on it is retried elsewhere like any actor
failure, emitted once). So scaling never loses or doubles a post. Driver thread only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from workers.stages.actor_start import Liveness, Starting, await_started, check_placeable, poll_starting, start_watch
from workers.driver.autoscaler import Autoscaler, ScalingPolicy, StageLoad
from workers.config import WorkerSettings
from workers.metrics import MetricsBuffer

log = logging.getLogger(__name__)


@dataclass
class Draining:
    """An actor scaled out of its pool, ended once no batch is left on it."""

    actor: Any
    since: float
    acks: list = field(default_factory=list)  # the ingest actors' set_stage_actors calls
    acked: bool = False                      # all confirmed before the statuses now being read


def actor_key(actor) -> str:
    """A stable key for a Ray actor handle (its id), or the object's identity for test doubles."""
    actor_id = getattr(actor, "_actor_id", None)
    return actor_id.hex() if actor_id is not None else f"obj-{id(actor)}"


class Pools:
    def __init__(self, s: WorkerSettings) -> None:
        from workers.stages import settings as stage_settings
        from workers.stages.pool import start_pool

        self.specs = {st.name: st for st in s.stage_settings()}  # workers.config.StageSpec
        self.metrics_ports: dict[str, int] = {}  # actor key -> its own /metrics port (stage_metrics)
        self.metrics_host = s.metrics_host if s.stage_metrics else None
        # each processor's settings, built here and sent with every actor (workers/stages/settings.py)
        self.settings = {name: stage_settings.build(st.processor, s) for name, st in self.specs.items()}
        self.start_timeout_s = s.actor_start_timeout_s
        self.drain_timeout_s = s.drain_timeout_s
        self.metrics = MetricsBuffer()  # drained into the driver's registry with the actors' buffers
        self.starting: dict[str, Starting] = {}     # an actor being added to the pool, not yet answered
        self.draining: dict[str, Draining] = {}     # an actor scaled down, finishing its batches
        self.unplaced: dict[str, str] = {}          # stage -> why its last new actor did not start
        self._grow_after: dict[str, float] = {}     # no new grow attempt before this (after a failed start)
        self._liveness = Liveness()
        self.autoscaler = Autoscaler(ScalingPolicy.from_settings(s),
                                     {name: (st.pool_min, st.pool_max) for name, st in self.specs.items()})
        for name, st in self.specs.items():
            check_placeable(name, st.num_cpus, st.num_gpus, autoscaling=bool(s.ray_address))
        self.actors = {name: start_pool(name, st.processor, st.pool_min, st.num_cpus, st.num_gpus,
                                        self.metrics_host, st.gate_role, self.settings[name], st.resources)
                       for name, st in self.specs.items()}
        self.occupancy: dict[str, float] = {}
        self.loads: dict[str, StageLoad] = {}
        for name in self.specs:
            self._report_bounds(name)

    @property
    def bounds(self) -> dict[str, tuple[int, int]]:
        return self.autoscaler.bounds

    def _new_actor(self, name: str):
        from workers.stages.pool import new_actor

        st = self.specs[name]
        return new_actor(name, st.processor, st.num_cpus, st.num_gpus, self.metrics_host, st.gate_role,
                         self.settings[name], st.resources)

    def log_metrics_ports(self, stop=None) -> None:
        """Waits (at most actor_start_timeout_s) for every actor to answer; StartupError if one does not."""
        for name, actors in self.actors.items():
            st = self.specs[name]
            ports = await_started(name, actors, self.start_timeout_s, st.num_cpus, st.num_gpus, stop)
            self.metrics_ports.update((actor_key(a), p) for a, p in zip(actors, ports) if p)
            if any(ports):
                log.info("stage %s actors' own /metrics on %s ports %s", name, self.metrics_host, ports)

    def _note_port(self, starting) -> None:
        import ray

        if starting.ref is None:  # no start call to read a port from (and no Ray call to make)
            return
        try:  # answered already (poll_starting saw it ready): no wait
            port = ray.get(starting.ref, timeout=1)
        except Exception:  # noqa: BLE001 - a port we cannot read only leaves the actor unscraped
            return
        if port:
            self.metrics_ports[actor_key(starting.actor)] = port

    def metrics_targets(self) -> dict[str, list[int]]:
        """stage -> the /metrics ports of its current actors (those whose port is known)."""
        return {name: [self.metrics_ports[k] for k in map(actor_key, pool) if k in self.metrics_ports]
                for name, pool in self.actors.items()}

    def handles(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.actors.items()}

    def rescale(self, busy_slot_s: dict[str, float], capacity: int, now: float | None = None,
                inflight: dict[str, int] | None = None, queued: dict[str, int] | None = None,
                lag: float | None = None) -> str | None:
        """Grow or shrink at most one stage by one actor (the autoscaler's decision); returns its name.

        `busy_slot_s` is each stage's in-flight batches integrated over time (summed over the ingest
        actors), `capacity` the slots they have, `inflight`/`queued` the batches running in / waiting
        for each stage now, `lag` the input's consumer lag. A shrunk pool's actor is in `draining`:
        the caller hands the new lists to the ingest actors and gives their acks to `retiring`."""
        now = time.monotonic() if now is None else now
        self.loads = {name: StageLoad(busy_slot_s.get(name, 0.0), capacity, (inflight or {}).get(name, 0),
                                      (queued or {}).get(name, 0)) for name in self.specs}
        sizes = {name: len(pool) + (name in self.starting) for name, pool in self.actors.items()}
        blocked = {name for name in self.specs
                   if name in self.starting or name in self.draining or now < self._grow_after.get(name, 0.0)}
        decision = self.autoscaler.decide(now, sizes, self.loads, lag, blocked)
        for name, reading in self.autoscaler.readings.items():
            if "occupancy" in reading:
                self.occupancy[name] = reading["occupancy"]
        if decision is None:
            return None
        name, pool = decision.stage, self.actors[decision.stage]
        self.metrics.inc("lrsa_scaling_decisions_total", stage=name, direction=decision.direction,
                         reason=decision.reason)
        if decision.direction == "up":
            self.starting[name] = start_watch(self._new_actor(name))
            what = "growing (the new actor joins once it answers)"
        else:
            actor = pool.pop()
            self._liveness.forget(actor)
            self.draining[name] = Draining(actor, now)
            what = "shrunk (the removed actor drains its batches first)"
        log.info("stage %s: %s: pool %s to %d", name, decision.detail, what, decision.size_to)
        return name

    def retiring(self, stage: str, acks: list) -> None:
        """The ingest actors were sent the pool without the draining actor: these are their answers."""
        if stage in self.draining:
            self.draining[stage].acks = list(acks)

    def finish_draining(self, statuses: list[dict[str, Any]], now: float | None = None) -> None:
        """End each draining actor once it holds no batch. `statuses`: the ingest actors' status,
        asked after the previous call (so after the acks this call found confirmed)."""
        import ray

        now = time.monotonic() if now is None else now
        for name, d in list(self.draining.items()):
            left = sum(st.get("retiring_inflight", {}).get(name, 0) for st in statuses)
            timed_out = now - d.since >= self.drain_timeout_s
            if (d.acked and left == 0) or timed_out:
                if timed_out:
                    log.warning("stage %s: a scaled-down actor still ran %d batch(es) after %gs (--drain-timeout-s); "
                                "ending it (they are retried on the other actors)", name, left, self.drain_timeout_s)
                ray.kill(d.actor, no_restart=True)
                del self.draining[name]
                log.info("stage %s: a scaled-down actor drained and ended; pool %d", name, len(self.actors[name]))
                continue
            if not d.acked and d.acks:
                done, _ = ray.wait(d.acks, num_returns=len(d.acks), timeout=0)
                d.acked = len(done) == len(d.acks)

    def resize(self, stage: str, lo: int | None, hi: int | None) -> tuple[int, dict[str, Any]]:
        """An operator's new bounds (control endpoint): (http status, body). The next rescale moves
        the pool inside them, one actor per tick, without waiting for windows or cooldowns."""
        if stage not in self.specs:
            return 404, {"error": f"no stage {stage!r}; stages: {sorted(self.specs)}"}
        old_lo, old_hi = self.bounds[stage]
        lo = old_lo if lo is None else lo
        hi = (max(old_hi, lo) if hi is None else hi)
        try:
            self.autoscaler.set_bounds(stage, lo, hi)
        except ValueError as e:
            return 400, {"error": str(e)}
        self._report_bounds(stage)
        log.info("stage %s: bounds %d:%d -> %d:%d (control endpoint)", stage, old_lo, old_hi, lo, hi)
        return 200, {"stage": stage, "min": lo, "max": hi, "actors": len(self.actors[stage]),
                     "previous": {"min": old_lo, "max": old_hi}}

    def _report_bounds(self, stage: str) -> None:
        lo, hi = self.bounds[stage]
        self.metrics.set("lrsa_pool_bounds", lo, stage=stage, bound="min")
        self.metrics.set("lrsa_pool_bounds", hi, stage=stage, bound="max")

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
                self._note_port(starting)
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
            lo = self.bounds[name][0]
            if len(pool) < lo and name not in self.starting and now >= self._grow_after.get(name, 0.0):
                log.info("stage %s: below its min (%d < %d): starting a replacement", name, len(pool), lo)
                self.starting[name] = start_watch(self._new_actor(name))
        return changed

    def status(self) -> dict[str, Any]:
        return {name: {"actors": len(pool), "starting": name in self.starting, "unplaced": self.unplaced.get(name)}
                for name, pool in self.actors.items()}

    def describe(self) -> dict[str, Any]:
        """Each pool for /status: size, bounds, starting/draining, the autoscaler's readings."""
        out = {}
        for name, pool in self.actors.items():
            lo, hi = self.bounds[name]
            load = self.loads.get(name, StageLoad())
            out[name] = {"actors": len(pool), "min": lo, "max": hi,
                         "configured": {"min": self.specs[name].pool_min, "max": self.specs[name].pool_max},
                         "starting": name in self.starting, "draining": int(name in self.draining),
                         "unplaced": self.unplaced.get(name), "inflight_batches": load.inflight,
                         "queued_batches": load.queued, **self.autoscaler.readings.get(name, {})}
        return out

    def placed(self) -> tuple[bool, str]:
        """Every pool at its min with started actors (readiness)."""
        for name, pool in self.actors.items():
            if not pool:
                return False, f"stage {name} has no actor" + (f" ({self.unplaced[name]})" if name in self.unplaced
                                                              else "")
            if len(pool) < self.specs[name].pool_min and name in self.unplaced:
                return False, f"stage {name} below its min: {self.unplaced[name]}"
        return True, "placed"

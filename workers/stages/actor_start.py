"""Starting stage actors with deadlines, and noticing the ones that died.

Ray queues an actor it cannot place (asks for GPUs no node has, or more CPUs than are free) for as
long as it takes, and every call sent to it waits with it. So nothing here sends work to an actor
before it answered once: at start-up the worker waits at most `actor_start_timeout_s` and then
fails with the setting to look at; a pool that grows keeps the new actor aside until it answers,
and drops it (reported) when it does not in time. Driver thread only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The worker cannot start as configured; the message names the setting."""


def setting_prefix(stage: str) -> str:
    """The settings a stage's actors are configured by: the gate's prescore pool uses the score stage's."""
    return "score" if stage == "prescore" else stage


def resource_flags(stage: str) -> str:
    p = setting_prefix(stage)
    return (f"--{p}-num-cpus / LRSA_{p.upper()}_NUM_CPUS, --{p}-num-gpus / LRSA_{p.upper()}_NUM_GPUS")


def ask(cpus: float, gpus: float) -> dict[str, float]:
    return {k: v for k, v in (("CPU", cpus), ("GPU", gpus)) if v > 0}


def fits_a_node(cpus: float, gpus: float) -> tuple[bool, str]:
    """Whether any live node of the Ray cluster has these resources at all (free or not)."""
    import ray

    want = ask(cpus, gpus)
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    ok = any(all(res.get(k, 0) >= v for k, v in want.items()) for res in nodes)
    largest = {k: max((res.get(k, 0) for res in nodes), default=0) for k in ("CPU", "GPU")}
    return ok, f"largest node: {largest['CPU']:g} CPU, {largest['GPU']:g} GPU"


def check_placeable(stage: str, cpus: float, gpus: float, autoscaling: bool) -> None:
    """Fail at once when no node of a local Ray can ever hold the actor (no autoscaler adds one)."""
    ok, largest = fits_a_node(cpus, gpus)
    if ok:
        return
    text = (f"stage {stage}: an actor asks Ray for {cpus:g} CPU and {gpus:g} GPU ({resource_flags(stage)}), "
            f"which no node of the Ray cluster has ({largest})")
    if not autoscaling:
        raise StartupError(text)
    log.warning("%s; waiting up to --actor-start-timeout-s for the cluster to add one", text)


def await_started(stage: str, actors: list, timeout_s: float, cpus: float, gpus: float, stop=None) -> list[Any]:
    """Each actor's first answer (its metrics port), within timeout_s; StartupError otherwise.
    An actor whose constructor raised fails at once, with the constructor's message. `stop` (an
    Event, set by the signal handler) ends the wait early."""
    import ray

    refs = {a.metrics_port.remote(): i for i, a in enumerate(actors)}
    answers: list[Any] = [None] * len(actors)
    deadline = time.monotonic() + timeout_s
    pending = list(refs)
    while pending and time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            raise StartupError(f"stopped while stage {stage}'s actors were starting")
        done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        if not done:
            continue
        try:
            answers[refs[done[0]]] = ray.get(done[0])
        except Exception as e:  # noqa: BLE001 - the constructor's error (RayActorError wraps it)
            raise StartupError(f"stage {stage}: an actor failed to start: {_cause(e)}") from e
    if pending:
        for a in actors:
            ray.kill(a)
        raise StartupError(
            f"stage {stage}: {len(pending)} of {len(actors)} actors not started after {timeout_s:g}s "
            f"(--actor-start-timeout-s): Ray could not place them (each asks {cpus:g} CPU, {gpus:g} GPU: "
            f"{resource_flags(stage)}; cluster free now: {_free()}) or their processor is still loading")
    return answers


def _cause(e: BaseException) -> str:
    text = str(e).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    # Ray's ActorDiedError carries the constructor's traceback; its last line is the error itself
    return (lines[-1] if lines else type(e).__name__)[:1000]


def _free() -> str:
    import ray

    try:
        free = ray.available_resources()
    except Exception:  # noqa: BLE001
        return "unknown"
    return f"{free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU"


@dataclass
class Starting:
    """An actor a pool is adding: handed to the ingest actors only once it answered."""

    actor: Any
    ref: Any
    since: float


def start_watch(actor: Any) -> Starting:
    return Starting(actor, actor.metrics_port.remote(), time.monotonic())


def poll_starting(stage: str, starting: Starting, timeout_s: float) -> tuple[str, str]:
    """("ready" | "waiting" | "failed", reason) without blocking; a late actor is killed."""
    import ray

    done, _ = ray.wait([starting.ref], timeout=0)
    if done:
        try:
            ray.get(done[0])
            return "ready", ""
        except Exception as e:  # noqa: BLE001
            return "failed", f"failed to start: {_cause(e)}"
    if time.monotonic() - starting.since < timeout_s:
        return "waiting", ""
    ray.kill(starting.actor)
    return "failed", (f"not started after {timeout_s:g}s (--actor-start-timeout-s): not placed by Ray "
                      f"({resource_flags(stage)}; cluster free now: {_free()}) or still loading")


class Liveness:
    """Pings each pool actor (one ping outstanding per actor); an actor whose ping fails with
    ActorDiedError is dead for good (Ray's restarts spent): the pool drops and replaces it."""

    def __init__(self) -> None:
        self._pings: dict[Any, Any] = {}  # actor handle -> outstanding ping ref

    def dead(self, actors: list) -> list:
        import ray

        gone = []
        for a in actors:
            ref = self._pings.get(a)
            if ref is None:
                self._pings[a] = a.ping.remote()
                continue
            done, _ = ray.wait([ref], timeout=0)
            if not done:
                continue  # busy with a batch, or restarting: not dead
            try:
                ray.get(ref)
                self._pings[a] = a.ping.remote()
            except ray.exceptions.RayActorError as e:
                if isinstance(e, getattr(ray.exceptions, "ActorUnavailableError", ())):
                    self._pings[a] = a.ping.remote()  # restarting: ask again
                    continue
                gone.append(a)
                self._pings.pop(a, None)
        return gone

    def forget(self, actor: Any) -> None:
        self._pings.pop(actor, None)

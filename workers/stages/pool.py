"""Stage actor pools: each stage (rationale, score) is a pool of Ray actors, each wrapping one
StageProcessor built from a dotted path in the configuration.

An actor call never raises for a failed batch: it answers ("ok", items) or (kind, message), so
the ingest actor decides about retries without unpicking Ray's exception wrappers. Kinds:
"transient" (TransientError while the processor says it is healthy), "down" (TransientError while
it says it is not: an outage), "nonretryable" (NonRetryable), "error" (any other exception).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

from workers.stages import gate as gating
from workers.stages.api import GateRole, NonRetryable, StageProcessor, TransientError, WorkItem

log = logging.getLogger(__name__)


def load_processor(path: str, settings: dict[str, Any] | None = None) -> StageProcessor:
    """'package.module:Class' (or 'package.module.Class') -> an instance, built with the settings
    the driver sent (workers/stages/settings.py) or, when none were, with no arguments."""
    from workers.stages import settings as stage_settings

    cls = stage_settings.import_path(path)
    if settings is None:
        return cls()
    return cls(settings=stage_settings.restore(path, settings))


class StageWorker:
    """Body of a stage actor (wrapped by ray.remote in `start_pool`)."""

    def __init__(self, stage: str, processor_path: str, metrics_host: str | None = None,
                 gate: GateRole | None = None, settings: dict[str, Any] | None = None) -> None:
        logging.basicConfig(level=logging.INFO)
        self.stage = stage
        self.gate = gate or GateRole()  # its part in the rationale gate, if any (workers/stages/gate.py)
        self.processor = load_processor(processor_path, settings)
        self._versions = self.processor.versions()
        self.port = None
        if metrics_host:  # the processor's own prometheus metrics (e.g. the scorer's) live in this process
            from prometheus_client import start_http_server

            server, _ = start_http_server(0, addr=metrics_host)
            self.port = server.server_address[1]

    def metrics_port(self) -> int | None:
        return self.port

    def process(self, items: list[WorkItem]) -> tuple[str, Any]:
        start = time.perf_counter()
        chosen = gating.selected(self.gate, items)  # behind a rationale gate: the posts it sent on
        try:
            out = self.processor.process([items[i] for i in chosen]) if chosen else []
        except NonRetryable as e:  # this input can never pass: the ingest actor bisects the batch
            return "nonretryable", f"{type(e).__name__}: {e}"
        except TransientError as e:  # "down": the processor says its service is out (an outage, not the posts)
            return ("transient" if self._healthy() else "down"), f"{type(e).__name__}: {e}"
        except Exception as e:  # a bug or a poison post: retried within the budget, then bisected
            log.exception("stage %s failed on a batch of %d", self.stage, len(items))
            return "error", f"{type(e).__name__}: {e}"
        elapsed_ms = (time.perf_counter() - start) * 1000
        for item in out:
            item.timings_ms.setdefault(self.stage, elapsed_ms)
            item.model_versions.update(self._versions)
        if self.gate.decides is not None:
            gating.after_prescore(out, self.gate.decides, getattr(self.processor, "name", None))
        for i, item in zip(chosen, out):
            items[i] = item
        return "ok", items

    def healthy(self) -> bool:
        return self.processor.healthy()

    def _healthy(self) -> bool:
        try:
            return bool(self.processor.healthy())
        except Exception:  # noqa: BLE001 - a failing health check is an unhealthy service
            return False

    def ping(self) -> bool:
        """Liveness for the driver: answers once the actor is up (queued behind a running batch)."""
        return True


def start_pool(stage: str, processor_path: str, size: int, num_cpus: float, num_gpus: float,
               metrics_host: str | None = None, gate: GateRole | None = None,
               settings: dict[str, Any] | None = None, resources: dict[str, float] | None = None) -> list:
    """`size` actors of one stage; GPUs are asked of Ray only when num_gpus > 0."""
    return [new_actor(stage, processor_path, num_cpus, num_gpus, metrics_host, gate, settings, resources)
            for _ in range(size)]


def actor_options(num_cpus: float, num_gpus: float, resources: dict[str, float] | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": num_cpus, "max_restarts": 3}
    if num_gpus > 0:
        options["num_gpus"] = num_gpus
    if resources:  # custom node resources: pins the pool to the nodes (groups) that have them
        options["resources"] = dict(resources)
    return options


def new_actor(stage: str, processor_path: str, num_cpus: float, num_gpus: float, metrics_host: str | None = None,
              gate: GateRole | None = None, settings: dict[str, Any] | None = None,
              resources: dict[str, float] | None = None):
    """One stage actor; `settings` (workers/stages/settings.py) travel with it as an argument."""
    import ray

    return ray.remote(StageWorker).options(**actor_options(num_cpus, num_gpus, resources)).remote(
        stage, processor_path, metrics_host, gate, settings)


class PoolClient:
    """One ingest actor's view of a stage pool: sends each batch to its least busy actor.

    Each actor gets a serial number when it joins; `submit` returns it and `release` takes it, so a
    batch is released against the actor that ran it even after the pool changed. An actor that
    leaves the pool while it still runs batches is "retiring" until they are released: the driver
    ends an actor it scaled down only once no ingest actor has a batch on a retiring actor."""

    def __init__(self, stage: str, actors: list) -> None:
        self.stage = stage
        self._lock = threading.Lock()  # the driver grows the pool from another thread of the actor
        self._serials = itertools.count()
        self.actors: list = []
        self._keys: list[int] = []          # serial of each actor in self.actors
        self._load: dict[int, int] = {}     # serial -> batches in flight, actors in the pool
        self._retiring: dict[int, int] = {}  # serial -> batches in flight, actors that left it
        self.set_actors(actors)

    def set_actors(self, actors: list) -> None:
        with self._lock:
            keys = []
            for a in actors:
                old = next((k for k, b in zip(self._keys, self.actors) if b == a and k not in keys), None)
                keys.append(next(self._serials) if old is None else old)
            for k in self._keys:
                if k not in keys and self._load.get(k):
                    self._retiring[k] = self._load[k]
            self._load = {k: self._load.get(k, 0) for k in keys}
            self.actors, self._keys = list(actors), keys

    def submit(self, items: list[WorkItem]) -> tuple[Any, int]:
        """(ObjectRef, actor serial), or (None, -1) while the pool has no actor (all dead, being replaced)."""
        with self._lock:
            if not self._load:
                return None, -1
            k = min(self._load, key=self._load.get)
            self._load[k] += 1
            actor = self.actors[self._keys.index(k)]
        return actor.process.remote(items), k

    def release(self, k: int) -> None:
        with self._lock:
            if k in self._load:
                self._load[k] = max(0, self._load[k] - 1)
            elif k in self._retiring:
                self._retiring[k] -= 1
                if self._retiring[k] <= 0:
                    del self._retiring[k]

    def retiring_inflight(self) -> int:
        """Batches still running on actors that left the pool (thread-safe)."""
        with self._lock:
            return sum(self._retiring.values())

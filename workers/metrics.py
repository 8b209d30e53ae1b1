"""Prometheus metrics of the worker.

One `/metrics` endpoint per `lrsa run` process, served by the driver. Ray actors live in other
processes, so they do not touch prometheus_client: each keeps a `MetricsBuffer` of counter
increments, histogram observations and gauge values, and the driver drains it every
`metrics_interval_s` into the real metrics (`DriverMetrics.apply`). Metric names are a contract:
deploy/prometheus and deploy/grafana refer to them.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from lrsa.schemas import DeadLetterReason

Labels = tuple[tuple[str, str], ...]

# name -> (kind, help, label names, histogram buckets)
SPECS: dict[str, tuple[str, str, tuple[str, ...], tuple[float, ...] | None]] = {
    "lrsa_posts_consumed_total": ("counter", "Posts read from the input topic", ("topic",), None),
    "lrsa_posts_emitted_total": ("counter", "Results acknowledged by the broker on the output topic", ("topic",), None),
    "lrsa_posts_dead_lettered_total": ("counter", "Posts sent to the dead-letter topic", ("reason",), None),
    "lrsa_stage_retries_total": ("counter", "Stage batches retried after a transient failure", ("stage",), None),
    "lrsa_stage_errors_total": ("counter", "Stage batch failures by kind (transient, error, nonretryable, actor_died)", ("stage", "kind"), None),
    "lrsa_commits_total": ("counter", "Offset commits (or committed transactions) made", ("mode",), None),
    "lrsa_send_retries_total": ("counter", "Output records re-sent after the broker refused them", (), None),
    "lrsa_send_refused_total": ("counter", "Records the broker refused for good (not retriable, e.g. too large "
                                "for the topic); each is re-sent with back-off, its offset uncommitted",
                                ("topic", "error"), None),
    "lrsa_batch_splits_total": ("counter", "Batches split in halves to find the post(s) a stage fails on "
                                "(retry budget spent or a non-retryable error)", ("stage",), None),
    "lrsa_stage_actor_failures_total": ("counter", "Stage actors that could not be placed or started, or died "
                                        "for good", ("stage", "kind"), None),
    "lrsa_stage_actors_unplaced": ("gauge", "1 while a stage pool's last attempt to add an actor failed "
                                   "(not placed by Ray or not started in --actor-start-timeout-s)", ("stage",), None),
    "lrsa_stage_latency_seconds": ("histogram", "Wall time of one batch in a stage", ("stage",),
                                   (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
    "lrsa_stage_batch_size": ("histogram", "Posts per batch handed to a stage", ("stage",),
                              (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)),
    "lrsa_inflight_batches": ("gauge", "Batches in flight per stage and ingest actor", ("stage", "actor"), None),
    "lrsa_uncommitted_posts": ("gauge", "Posts consumed whose offsets are not committed yet", ("actor",), None),
    "lrsa_partitions_paused": ("gauge", "Partitions paused by backpressure", ("actor",), None),
    "lrsa_consumer_lag_messages": ("gauge", "Log end offset minus committed offset", ("topic", "partition"), None),
    "lrsa_rejoins_total": ("counter", "Group rejoins forced after a rebalance that did not finish", ("kind",), None),
    "lrsa_actor_pool_size": ("gauge", "Actors in each pool", ("stage",), None),
    "lrsa_stage_slot_utilisation_ratio": ("gauge", "Share of a stage's in-flight batch slots in use, averaged over "
                                  "the pool-growth window (grows at 0.75)", ("stage",), None),
    "lrsa_pool_bounds": ("gauge", "A stage pool's bounds (bound=min|max; settings, or set through the control "
                         "endpoint)", ("stage", "bound"), None),
    "lrsa_stage_queued_batches": ("gauge", "Batches waiting for a stage (for a slot, a retry or to fill), all "
                                  "ingest actors", ("stage",), None),
    "lrsa_stage_work_per_actor": ("gauge", "Batches running or waiting for a stage per actor of its pool, "
                                  "averaged over the pool-growth window", ("stage",), None),
    "lrsa_scaling_decisions_total": ("counter", "Pool size changes by the autoscaler, by direction (up/down) and "
                                     "reason (backlog, lag_trend, occupancy, idle, min, max)",
                                     ("stage", "direction", "reason"), None),
    "lrsa_ingest_actor_replacements_total": ("counter", "Ingest actors the driver replaced after one died or "
                                             "failed (kind: died = its process or node was lost, failed = its "
                                             "loop raised, stalled = its loop blocked past --ingest-stall-s)", ("kind",), None),
    "lrsa_consumption_paused": ("gauge", "1 while an operator paused consumption (POST /pause)", (), None),
}


# Label values known before anything happens, per metric: `DriverMetrics.zero_known` creates these
# series at 0 so every panel and alert finds its metric from the first scrape (a counter born with
# its first increment hides that increment from rate()). "{stage}" is each enabled stage. Not here:
# lrsa_send_refused_total (its `error` is the broker's error class, an open set) and the gauges,
# which the actors set as soon as they run.
KNOWN_SERIES: dict[str, list[dict[str, str]]] = {
    "lrsa_posts_dead_lettered_total": [{"reason": r.value} for r in DeadLetterReason],
    "lrsa_stage_retries_total": [{"stage": "{stage}"}],
    "lrsa_batch_splits_total": [{"stage": "{stage}"}],
    "lrsa_stage_errors_total": [{"stage": "{stage}", "kind": k}
                                for k in ("transient", "error", "nonretryable", "actor_died")],
    "lrsa_stage_actor_failures_total": [{"stage": "{stage}", "kind": k} for k in ("not_started", "died")],
    "lrsa_scaling_decisions_total": [{"stage": "{stage}", "direction": d, "reason": r} for d, r in (
        ("up", "backlog"), ("up", "lag_trend"), ("up", "occupancy"), ("up", "min"),
        ("down", "idle"), ("down", "max"))],
    "lrsa_rejoins_total": [{"kind": k} for k in ("dropped_join", "timeout")],
    "lrsa_ingest_actor_replacements_total": [{"kind": k} for k in ("died", "failed", "stalled")],
}


def labels(**kv: Any) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in kv.items()))


class MetricsBuffer:
    """What an actor measured since the last drain; thread-safe (the driver drains from another thread)."""

    MAX_OBSERVATIONS = 10_000  # per series between drains; beyond that, sampling is enough

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = defaultdict(float)
        self._observations: dict[tuple[str, Labels], list[float]] = defaultdict(list)
        self._gauges: dict[tuple[str, Labels], float] = {}
        self._removed: set[tuple[str, Labels]] = set()  # gauge label sets to drop from the registry

    def inc(self, name: str, amount: float = 1.0, **kv: Any) -> None:
        with self._lock:
            self._counters[(name, labels(**kv))] += amount

    def observe(self, name: str, value: float, **kv: Any) -> None:
        with self._lock:
            obs = self._observations[(name, labels(**kv))]
            if len(obs) < self.MAX_OBSERVATIONS:
                obs.append(value)

    def set(self, name: str, value: float, **kv: Any) -> None:
        with self._lock:
            key = (name, labels(**kv))
            self._gauges[key] = value
            self._removed.discard(key)

    def remove(self, name: str, **kv: Any) -> None:
        """Stop reporting a gauge's label set (e.g. the lag of a partition this actor no longer
        owns): the buffer forgets its value and the next drain tells the driver to drop the series."""
        with self._lock:
            key = (name, labels(**kv))
            self._gauges.pop(key, None)
            self._removed.add(key)

    def drain(self) -> dict[str, Any]:
        with self._lock:
            out = {"counters": dict(self._counters), "observations": dict(self._observations),
                   "gauges": dict(self._gauges), "removed": sorted(self._removed)}
            self._counters.clear()
            self._observations.clear()
            self._removed.clear()
            return out  # gauges keep their last value (re-sent every drain)


class DriverMetrics:
    """The real prometheus_client metrics, fed from the actors' buffers."""

    def __init__(self, registry=None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry or CollectorRegistry()  # one per pipeline: several may run in a process
        self._metrics = {}
        for name, (kind, doc, names, buckets) in SPECS.items():
            if kind == "counter":
                m = Counter(name.removesuffix("_total"), doc, names, registry=self.registry)
            elif kind == "histogram":
                m = Histogram(name, doc, names, buckets=buckets, registry=self.registry)
            else:
                m = Gauge(name, doc, names, registry=self.registry)
            self._metrics[name] = m

    def _child(self, name: str, lbls: Labels):
        m = self._metrics[name]
        return m.labels(**dict(lbls)) if lbls else m

    def apply(self, delta: dict[str, Any]) -> None:
        # Removals first: a label set removed and set again since the last drain is only in "gauges".
        for name, lbls in delta.get("removed", ()):
            self.remove(name, lbls)
        for (name, lbls), amount in delta["counters"].items():
            self._child(name, lbls).inc(amount)
        for (name, lbls), values in delta["observations"].items():
            child = self._child(name, lbls)
            for v in values:
                child.observe(v)
        for (name, lbls), value in delta["gauges"].items():
            self._child(name, lbls).set(value)

    def set(self, name: str, value: float, **kv: Any) -> None:
        self._child(name, labels(**kv)).set(value)

    def inc(self, name: str, amount: float = 1.0, **kv: Any) -> None:
        self._child(name, labels(**kv)).inc(amount)

    def zero(self, name: str, **kv: Any) -> None:
        """Create a label set at 0 before its first increment, so it is scraped from the start: a
        rate needs two samples, and a counter born with its first increment hides that increment."""
        self._child(name, labels(**kv))

    def zero_known(self, stages: list[str], input_topic: str, output_topic: str, commit_mode: str) -> None:
        """Every series of KNOWN_SERIES (per stage where it has one) and the flow counters, at 0."""
        self.zero("lrsa_posts_consumed_total", topic=input_topic)
        self.zero("lrsa_posts_emitted_total", topic=output_topic)
        self.zero("lrsa_commits_total", mode=commit_mode)
        for name, label_sets in KNOWN_SERIES.items():
            for kv in label_sets:
                for stage in (stages if "stage" in kv else [None]):
                    self.zero(name, **{k: (stage if v == "{stage}" else v) for k, v in kv.items()})

    def remove(self, name: str, lbls: Labels) -> None:
        """Drop one label set of a labelled metric (absent already: nothing to do)."""
        m = self._metrics[name]
        try:
            m.remove(*(dict(lbls)[n] for n in m._labelnames))
        except KeyError:
            pass

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port (useful when port is 0)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return server.server_address[1]

    def close(self) -> None:
        if getattr(self, "_server", None) is not None:
            self._server.shutdown()
            self._server.server_close()

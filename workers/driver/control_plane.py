"""The control endpoint as the driver's supervise loop sees it: serving it (token and TLS checked
at start), answering the requests it queued (resize, pause, resume, drain), publishing the
snapshot and readiness it serves, and keeping the pool bounds an operator set across restarts.

The endpoint's own thread (workers/driver/control.py) only reads the published snapshot and queues
requests; everything here runs on the supervise loop's thread."""

from __future__ import annotations

import logging
from typing import Any, Callable

from workers.config import WorkerSettings
from workers.driver import control_bounds
from workers.driver.control import ControlServer, ControlState
from workers.driver.control_settings import is_loopback

log = logging.getLogger(__name__)

Answer = tuple[int, dict[str, Any]]


class ControlPlane:
    def __init__(self, s: WorkerSettings) -> None:
        self.s = s
        self.state = ControlState(stale_after_s=max(30.0, 10 * s.metrics_interval_s))
        self.port: int | None = None
        self.server: ControlServer | None = None

    def start(self) -> bool:
        """Serve the endpoint; False when its settings are wrong (the worker does not start). A port
        that is taken is reported and the worker runs without the endpoint."""
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
        server = ControlServer(self.state, s.control_host, s.control_port, token, tls)
        try:
            self.port = server.start()
        except OSError as e:
            log.error("control endpoint not served: cannot bind %s:%s (--control-port / LRSA_CONTROL_PORT): %s; "
                      "running without it", s.control_host, s.control_port, e)
            return True
        self.server = server
        log.info("control endpoint at %s://%s:%d (%s)", "https" if tls else "http", s.control_host, self.port,
                 "token required for /status and POSTs" if token else "no token: loopback callers are trusted")
        return True

    def close(self) -> None:
        self.state.set_phase("stopped")
        if self.server is not None:
            self.server.close()

    def answer(self, pools: Any, set_paused: Callable[[bool], Answer], drain: Callable[[], Answer]) -> None:
        """Answer every queued request: resizes here (kept in --control-bounds-file), pause/resume
        and drain through the driver's callbacks. A request that fails is answered 500, never
        raised into the loop."""
        for kind, args, future in self.state.take_requests():
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up waiting: not applied
            try:
                if kind == "resize":
                    answer = pools.resize(args["stage"], args.get("min"), args.get("max"))
                    if answer[0] == 200:
                        self.keep_bounds(pools)
                elif kind in ("pause", "resume"):
                    answer = set_paused(kind == "pause")
                elif kind == "drain":
                    answer = drain()
                else:
                    answer = (400, {"error": f"unknown request {kind}"})
            except Exception as e:  # noqa: BLE001 - answered, never raised into the loop
                log.exception("control request %s failed", kind)
                answer = (500, {"error": f"{type(e).__name__}: {e}"})
            future.set_result(answer)

    def refuse(self) -> None:
        """While stopping: every queued request is answered 503."""
        for _, _, future in self.state.take_requests():
            if future.set_running_or_notify_cancel():
                future.set_result((503, {"error": "the worker is stopping"}))

    def restore_bounds(self, pools: Any) -> None:
        """Bounds an operator set before a restart (--control-bounds-file) win over the flags."""
        path = self.s.control_bounds_file
        for stage, (lo, hi) in control_bounds.load(path).items():
            status, body = pools.resize(stage, lo, hi)
            if status == 200:
                log.info("stage %s: bounds %d:%d kept from %s", stage, lo, hi, path)
            else:
                log.warning("stage %s: bounds in %s not applied: %s", stage, path, body.get("error"))

    def keep_bounds(self, pools: Any) -> None:
        path = self.s.control_bounds_file
        if path is None:
            return
        try:
            control_bounds.save(path, dict(pools.bounds))
        except OSError as e:
            log.error("pool bounds not kept in %s (--control-bounds-file): %s; a restart goes back to the "
                      "flags' bounds", path, e)

    def publish(self, pools: Any, statuses: list[dict[str, Any]], paused: bool) -> None:
        """The snapshot /status serves and the readiness /readyz answers, from this tick's state."""
        lag: dict[str, int] = {}
        for st in statuses:
            lag.update(st.get("lag_by_partition", {}))
        ingest = [{k: st.get(k) for k in ("index", "assigned", "paused_partitions", "consumed", "lag", "busy",
                                          "paused_by_operator", "inflight", "queued")} for st in statuses]
        status = {"input_topic": self.s.input_topic, "group_id": self.s.group_id, "paused": paused,
                  "pools": pools.describe(), "ingest": ingest, "lag": lag, "lag_total": sum(lag.values()),
                  "lag_trend_posts_per_s": pools.autoscaler.lag_slope, "decisions": pools.autoscaler.recent()}
        placed, why = pools.placed()
        if paused:
            ready = (False, "consumption paused by an operator (POST /resume)")
        elif not placed:
            ready = (False, why)
        elif not any(st.get("assigned") for st in statuses):
            ready = (False, "no input partition assigned yet")
        else:
            ready = (True, "consuming")
        self.state.publish(status, ready)

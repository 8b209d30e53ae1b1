"""The driver's HTTP control and health endpoint (aiohttp, on a thread of its own).

    GET  /healthz          200 while the driver's supervise loop ticks (or the worker is starting)
    GET  /readyz           200 while consuming with every stage pool placed; 503 with the reason
    GET  /status           JSON: pools (size, bounds, in flight, queued), lag per partition, recent
                           scaling decisions with their reasons, paused or not
    POST /pools/{stage}    {"min": N, "max": M}: a pool's bounds (the autoscaler moves it inside them)
    POST /pause, /resume   stop / restart fetching (in-flight work finishes and commits meanwhile)
    POST /drain            the graceful stop SIGTERM makes: finish, commit, exit 0

TLS: with --control-tls-certfile/--control-tls-keyfile it serves HTTPS (a token sent off the host
otherwise crosses the network in clear; the driver warns). Auth: with a token configured, /status and every POST need `Authorization: Bearer <token>`
(missing: 401, wrong: 403; nothing changes). /healthz and /readyz never do (probes). Without a
token the endpoint must be on loopback (the driver refuses to start otherwise), where it trusts
the host.

Thread rules: the handlers never touch the pipeline. They read the snapshot the driver's loop
publishes each tick (`ControlState.publish`, under a lock) and hand changes to the loop as
requests (`ask`), which the loop takes (`take_requests`) and answers on its own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import queue
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

ANSWER_WAIT_S = 10.0  # longest a POST waits for the driver's loop to apply it


class ControlState:
    """What the endpoint shows and asks: shared by the driver's loop and the server thread."""

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"phase": "starting"}
        self._ready: tuple[bool, str] = (False, "starting")
        self._phase = "starting"
        self._tick_at = time.monotonic()
        self.stale_after_s = stale_after_s
        self._requests: queue.Queue = queue.Queue()

    # ---- the driver's loop ----
    def publish(self, status: dict[str, Any], ready: tuple[bool, str], phase: str = "running") -> None:
        with self._lock:
            self._status, self._ready, self._phase = status, ready, phase
            self._tick_at = time.monotonic()

    def set_phase(self, phase: str, reason: str | None = None) -> None:
        with self._lock:
            self._phase = phase
            self._ready = (False, reason or phase) if phase != "running" else self._ready
            self._status = {**self._status, "phase": phase}
            self._tick_at = time.monotonic()

    def take_requests(self) -> list[tuple[str, dict[str, Any], concurrent.futures.Future]]:
        out = []
        while True:
            try:
                out.append(self._requests.get_nowait())
            except queue.Empty:
                return out

    # ---- the server thread ----
    def snapshot(self) -> tuple[dict[str, Any], tuple[bool, str], str, float]:
        with self._lock:
            return self._status, self._ready, self._phase, time.monotonic() - self._tick_at

    def ask(self, kind: str, **args: Any) -> concurrent.futures.Future:
        """A change for the loop to make; the future gets (http status, JSON body)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._requests.put((kind, args, future))
        return future


class ControlServer:
    def __init__(self, state: ControlState, host: str, port: int, token: str | None, tls=None) -> None:
        self.state, self.host, self.port, self.token, self.tls = state, host, port, token, tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> int:
        """Serve on a daemon thread; returns the bound port. OSError when the port cannot be bound."""
        started = threading.Event()
        outcome: list[Any] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                outcome.append(loop.run_until_complete(self._open()))
            except BaseException as e:  # noqa: BLE001 - handed to start()
                outcome.append(e)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="lrsa-control", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s):
            raise OSError(f"control endpoint not up after {timeout_s:g}s")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        self.port = outcome[0]
        return self.port

    async def _open(self) -> int:
        from aiohttp import web

        app = web.Application(middlewares=[self._auth])
        app.add_routes([web.get("/healthz", self._healthz), web.get("/readyz", self._readyz),
                        web.get("/status", self._status), web.post("/pools/{stage}", self._resize),
                        web.post("/pause", self._pause), web.post("/resume", self._resume),
                        web.post("/drain", self._drain)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        return self._runner.addresses[0][1]

    def close(self, timeout_s: float = 5.0) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    # ---- handlers ----
    def _needs_token(self, request) -> bool:
        return self.token is not None and (request.method != "GET" or request.path == "/status")

    @property
    def _auth(self):
        from aiohttp import web

        @web.middleware
        async def auth(request, handler):
            if self._needs_token(request):
                given = request.headers.get("Authorization", "")
                scheme, _, value = given.partition(" ")
                if scheme.lower() != "bearer" or not value.strip():
                    return web.json_response({"error": "a bearer token is required"}, status=401,
                                             headers={"WWW-Authenticate": 'Bearer realm="lrsa"'})
                if not hmac.compare_digest(value.strip().encode(), self.token.encode()):
                    log.warning("control: %s %s refused: wrong token (from %s)", request.method, request.path,
                                request.remote)
                    return web.json_response({"error": "wrong token"}, status=403)
            return await handler(request)

        return auth

    async def _healthz(self, request):
        from aiohttp import web

        _, _, phase, age = self.state.snapshot()
        alive = phase == "starting" or age <= self.state.stale_after_s
        return web.json_response({"alive": alive, "phase": phase, "last_tick_s": round(age, 3)},
                                 status=200 if alive else 503)

    async def _readyz(self, request):
        from aiohttp import web

        _, (ready, reason), phase, age = self.state.snapshot()
        ready = ready and age <= self.state.stale_after_s
        return web.json_response({"ready": ready, "reason": reason if not ready else "consuming",
                                  "phase": phase}, status=200 if ready else 503)

    async def _status(self, request):
        from aiohttp import web

        status, (ready, reason), phase, age = self.state.snapshot()
        return web.json_response({**status, "phase": phase, "ready": ready, "ready_reason": reason,
                                  "last_tick_s": round(age, 3)})

    async def _resize(self, request):
        from aiohttp import web

        try:
            body = await request.json()
            lo = body.get("min")
            hi = body.get("max")
            if lo is not None:
                lo = int(lo)
            if hi is not None:
                hi = int(hi)
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"error": 'body must be JSON {"min": N, "max": M}'}, status=400)
        if lo is None and hi is None:
            return web.json_response({"error": 'give "min", "max" or both'}, status=400)
        return await self._ask("resize", stage=request.match_info["stage"], min=lo, max=hi)

    async def _pause(self, request):
        return await self._ask("pause")

    async def _resume(self, request):
        return await self._ask("resume")

    async def _drain(self, request):
        return await self._ask("drain")

    async def _ask(self, kind: str, **args: Any):
        from aiohttp import web

        _, _, phase, _ = self.state.snapshot()
        if phase != "running":
            return web.json_response({"error": f"the worker is {phase}; try again"}, status=503)
        future = self.state.ask(kind, **args)
        try:
            status, body = await asyncio.wait_for(asyncio.wrap_future(future), ANSWER_WAIT_S)
        except asyncio.TimeoutError:
            return web.json_response({"error": f"the driver did not answer within {ANSWER_WAIT_S:g}s"}, status=503)
        log.info("control: %s %s -> %d", kind, args or "", status)
        return web.json_response(body, status=status)

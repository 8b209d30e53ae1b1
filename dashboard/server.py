"""The dashboard's web server (aiohttp): the page, its static files, plotly.js from the installed
plotly package, and Server-Sent Events that push every update to the open pages.

    GET /              the page
    GET /static/...    its script and style; /static/plotly.min.js from the plotly package
    GET /events        text/event-stream: a snapshot, then the updates, batched every FLUSH_S (no reload)
    GET /api/snapshot  the same snapshot as JSON
    GET /api/posts/ID  one of the latest posts (404 when it is not among them)
    GET /healthz       200 once serving

The Kafka thread hands records to the event loop (`call_soon_threadsafe`); the view is only touched
on the loop. A page that falls behind (its queue full) is dropped; its EventSource reconnects and
starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

from aiohttp import web

from dashboard.feed import KafkaFeed
from dashboard.settings import DashboardSettings
from dashboard.view import DashboardView

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CLIENT_QUEUE = 5000
HEARTBEAT_S = 15.0
FLUSH_S = 0.25  # updates are pushed in batches this often
# No inline script or style attribute can run: the page's code is /static only (defence in depth
# beside textContent). plotly.js sets inline styles, hence style-src 'unsafe-inline'.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

VIEW = web.AppKey("view", DashboardView)
CLIENTS = web.AppKey("clients", set)
STATUS = web.AppKey("status", dict)


def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@web.middleware
async def _headers(request: web.Request, handler):
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _broadcast(app: web.Application, event: dict) -> None:
    data = json.dumps(event, separators=(",", ":"))
    for queue in list(app[CLIENTS]):
        try:
            queue.put_nowait(data)
        except asyncio.QueueFull:  # that page fell behind: drop it, it reconnects to a snapshot
            app[CLIENTS].discard(queue)
            _close_queue(queue)


def _close_queue(queue: asyncio.Queue) -> None:
    try:
        while True:
            queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    queue.put_nowait(None)  # the handler ends the stream


def build_app(settings: DashboardSettings, start_feed: bool = True) -> web.Application:
    app = web.Application(middlewares=[_headers])
    view = DashboardView(settings.history_windows, settings.max_entities, settings.recent_posts)
    app[VIEW], app[CLIENTS], app[STATUS] = view, set(), {"type": "status", "kafka": "starting"}
    plotly_js: dict[str, bytes] = {}

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def plotly(_request: web.Request) -> web.Response:
        if "js" not in plotly_js:
            plotly_js["js"] = await asyncio.get_running_loop().run_in_executor(None, _plotly_js)
        return web.Response(body=plotly_js["js"], content_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE)
        await response.write(_sse(json.dumps(view.snapshot(), separators=(",", ":"))))
        await response.write(_sse(json.dumps(app[STATUS], separators=(",", ":"))))
        app[CLIENTS].add(queue)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if data is None:
                    break
                await response.write(_sse(data))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            app[CLIENTS].discard(queue)
        return response

    async def snapshot(_request: web.Request) -> web.Response:
        return web.json_response(view.snapshot())

    async def post(request: web.Request) -> web.Response:
        found = view.post(request.match_info["post_id"])
        return web.json_response(found) if found else web.json_response({"error": "not among the latest posts"},
                                                                        status=404)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, **app[STATUS]})

    app.router.add_get("/", index)
    app.router.add_get("/static/plotly.min.js", plotly)
    app.router.add_static("/static/", STATIC, show_index=False)
    app.router.add_get("/events", events)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/posts/{post_id}", post)
    app.router.add_get("/healthz", healthz)

    if start_feed:
        async def feed_ctx(app: web.Application):
            loop = asyncio.get_running_loop()

            # Coalesced: one message per FLUSH_S with the latest upsert of each window (the
            # aggregator sends one per mention) and every alert and post, in order.
            windows: dict[tuple, dict] = {}
            others: list[dict] = []

            def on_record(kind: str, key: bytes | None, value: bytes | None) -> None:
                event = view.apply(kind, key, value)
                if event is None:
                    return
                if event["type"] == "aggregate":
                    r = event["record"]
                    windows[(r["entity"], r["window"], r["start_ms"])] = event
                elif event["type"] == "aggregate_removed":
                    windows[(event["entity"], event["window"], event["start_ms"])] = event
                else:
                    others.append(event)

            async def flush() -> None:
                while True:
                    await asyncio.sleep(FLUSH_S)
                    if windows or others:
                        events = [*windows.values(), *others]
                        windows.clear()
                        others.clear()
                        _broadcast(app, {"type": "batch", "events": events})

            def on_status(status: dict) -> None:
                if status != app[STATUS]:
                    app[STATUS] = status
                    _broadcast(app, status)

            feed = KafkaFeed(settings,
                             lambda *rec: loop.call_soon_threadsafe(on_record, *rec),
                             lambda st: loop.call_soon_threadsafe(on_status, st))
            feed.start()
            flusher = asyncio.create_task(flush())
            yield
            flusher.cancel()
            await loop.run_in_executor(None, feed.stop)

        app.cleanup_ctx.append(feed_ctx)

    async def end_streams(app: web.Application) -> None:
        for queue in list(app[CLIENTS]):
            _close_queue(queue)

    app.on_shutdown.append(end_streams)
    return app


def _sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


async def serve(settings: DashboardSettings, ready=None) -> None:
    """Serve until cancelled; `ready(url)` is called once the port is bound."""
    app = build_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # the bound port (http_port 0: a free one)
    host = settings.http_host if ":" not in settings.http_host else f"[{settings.http_host}]"
    url = f"http://{host}:{port}/"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        ready(url)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # ends the event streams, stops the Kafka thread (bounded waits)

"""`lrsa dashboard`: serve the live brand-monitoring page (dashboard/server.py)."""

from __future__ import annotations

import argparse

from dashboard.settings import DashboardSettings
from lrsa.ports import wait_reachable
from lrsa.settings import add_settings_flags, settings_from_args


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="live web page: entity windows, sentiment trends, shift alerts and the "
                       "latest posts, pushed as they arrive (reads the aggregates, alerts and results topics)")
    add_settings_flags(p, DashboardSettings)
    p.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    import asyncio

    from dashboard.server import serve

    settings = settings_from_args(DashboardSettings, args)
    # a wrong address is a configuration error at start; later outages are shown on the page and retried
    wait_reachable(settings.bootstrap_servers, settings.kafka_connect_timeout_s)
    asyncio.run(serve(settings, ready=lambda url: print(f"dashboard: {url}", flush=True)))
    return 0

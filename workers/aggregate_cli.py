"""Commands of brand monitoring: `lrsa aggregate` and `lrsa bench aggregate`. Heavy imports
(quixstreams, kafka) happen inside the command functions."""

from __future__ import annotations

import argparse

from lrsa.settings import add_settings_flags, settings_from_args
from workers.aggregate.config import AggregateSettings


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="event-time windows per entity over the results topic, and shift "
                       "alerts (Quix Streams; aggregates and alerts topics)")
    add_settings_flags(p, AggregateSettings)
    p.set_defaults(func=_aggregate)

    from workers.bench.aggregate import AggregateBenchSettings

    p = bench.add_parser("aggregate", help="results/s of lrsa aggregate vs a bare kafka-python loop on the same "
                         "topic, and freshness (result produced -> aggregate visible) p50/p99 under load")
    add_settings_flags(p, AggregateBenchSettings)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=_bench)


def _aggregate(args: argparse.Namespace) -> int:
    from workers.aggregate.service import run_aggregate

    return run_aggregate(settings_from_args(AggregateSettings, args))


def _bench(args: argparse.Namespace) -> int:
    from workers.bench.aggregate import AggregateBenchSettings, run_bench

    return run_bench(settings_from_args(AggregateBenchSettings, args), as_json=args.json)

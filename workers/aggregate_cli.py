"""Commands of brand monitoring: `lrsa aggregate` and `lrsa bench aggregate`. Heavy imports
(quixstreams, kafka) happen inside the command functions."""

from __future__ import annotations

import argparse

from lrsa.settings import add_settings_flags, settings_from_args
from workers.aggregate_config import AggregateSettings


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="event-time windows per entity over the results topic, and shift "
                       "alerts (Quix Streams; aggregates and alerts topics)")
    add_settings_flags(p, AggregateSettings)
    p.set_defaults(func=_aggregate)


def _aggregate(args: argparse.Namespace) -> int:
    from workers.aggregate import run_aggregate

    return run_aggregate(settings_from_args(AggregateSettings, args))

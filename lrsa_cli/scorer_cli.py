"""`lrsa bench scorer`: Triton vs in-process throughput of the fused SLM (lrsa_cli.bench_scorer). It lives
in the composition root because it drives both a score stage (workers/) and a tritonserver (serving/)."""

from __future__ import annotations

import argparse
import json

from lrsa.settings import add_settings_flags


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    from lrsa_cli.bench_scorer import BenchScorerSettings

    p = bench.add_parser("scorer", help="posts/s through Triton (gRPC, dynamic batching) vs the same model in-process")
    add_settings_flags(p, BenchScorerSettings)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from lrsa.settings import settings_from_args
    from lrsa_cli.bench_scorer import BenchScorerSettings, format_result, run_bench

    result = run_bench(settings_from_args(BenchScorerSettings, args))
    print(json.dumps(result) if args.json else format_result(result))
    return 0

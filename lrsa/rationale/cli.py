"""`lrsa bench rationale`: the rationale engine vs `model.generate()` (see lrsa/rationale/bench.py).

Only argparse here: `lrsa --help` stays fast. The flags live in lrsa/rationale/bench_args.py,
shared with the benchmark (which must run with only torch and transformers installed).
"""

from __future__ import annotations

import argparse

from lrsa.rationale.bench_args import add_bench_arguments


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("rationale", help="rationale engine tokens/s vs generate() (default and static cache)",
                         description="Engine vs model.generate() and generate(cache_implementation='static') on one "
                                     "model, prompts and batch size, mixed output lengths; prints the ratios.")
    add_bench_arguments(p)
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from lrsa.rationale.bench import bench, print_report

    print_report(bench(args), args.json)
    return 0

"""`lrsa` console script. Each room registers its own subcommands; heavy imports happen inside
the command functions so that `lrsa --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from lrsa.settings import SettingsError

# Modules exposing `register(sub, bench)`; sub/bench are argparse subparser groups.
COMMAND_MODULES = [
    "lrsa.cli",                  # schemas
    "lrsa_cli.demo",             # demo
    "lrsa_cli.live_quality",     # bench live-quality
    "lrsa_cli.gate_curve",       # bench gate-curve
    "lrsa_cli.reference",        # config-reference
    "lrsa_cli.models_cli",       # models list|fetch (named offline models)
    "lrsa.rationale.cli",        # bench rationale
    "workers.cli",               # run, produce, stack, bench pipeline
    "lrsa_cli.run_serve",        # run --serve (a local tritonserver for the worker)
    "lrsa_cli.scorer_cli",       # bench scorer (uses workers and serving)
    "workers.control_cli",       # status, scale, control, bench scaling
    "workers.aggregate_cli",     # aggregate, bench aggregate
    "serving.cli",               # serve, export
    "dashboard.cli",             # dashboard
    "training.cli",              # train, eval, ablations
    "training.rationales_cli",   # rationales (batch job)
]


def version() -> str:
    """The installed package's version (pyproject.toml), or "unknown" from a bare checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("lrsa-stream")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrsa",
        description="Real-time multimodal aspect-based sentiment analysis (LRSA) over social streams.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"lrsa {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench_parser = sub.add_parser("bench", help="benchmarks that print measured ratios")
    bench = bench_parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not e.name or not name.startswith(e.name):
                raise
            continue  # that room has no commands yet
        module.register(sub, bench)
    return parser


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C does, so `finally` blocks stop the services a command started
    (the demo's Kafka and tritonserver); commands with their own handler (run, serve) replace it."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # kafka-python logs every connection at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except SettingsError as e:  # say what was wrong with the flags or env vars, no traceback
        print(f"lrsa {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`lrsa run --serve`: the worker with its own local tritonserver. The server is started for the
score stage's checkpoint (--scorer-checkpoint, else LRSA_SCORER_CHECKPOINT, else the shipped model)
on free ports, the score stage is pointed at it, and it is stopped when the worker ends. In the
composition root because it drives the worker (workers/) and a tritonserver (serving/)."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Callable

from lrsa.settings import SettingsError, settings_from_args

log = logging.getLogger(__name__)

TRITON_READY_S = 300.0  # a cold tritonserver with the Python backend on a busy 2-core machine


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    run = sub.choices["run"]  # registered by workers.cli, which COMMAND_MODULES lists first
    # beside the stage flags (the group add_settings_flags made from WorkerSettings.FLAG_GROUPS)
    group = next((g for g in run._action_groups if g.title == "stages"), run)
    group.add_argument("--serve", action="store_true",
                       help="start a local tritonserver for the score stage's checkpoint (--scorer-checkpoint, "
                            "else the shipped model) on free ports, score against it, stop it at exit")
    run_worker = run.get_default("func")
    run.set_defaults(func=lambda args: run_serving(args, run_worker) if args.serve else run_worker(args))


def run_serving(args: argparse.Namespace, run_worker: Callable[[argparse.Namespace], int]) -> int:
    from lrsa.model_pack import resolve_checkpoint
    from serving.triton_server import TritonServer, render_repository
    from workers.config import WorkerSettings
    from workers.kafka_clients.preflight import check_kafka
    from workers.stages.score import ScorerSettings

    s = settings_from_args(WorkerSettings, args)
    if not s.score_enabled:
        raise SettingsError("--serve starts a scorer for the score stage, which --no-score-enabled turns off: "
                            "drop one of them")
    if s.scorer_url is not None:
        raise SettingsError(f"--serve starts its own scorer; --scorer-url {s.scorer_url} names another: "
                            "drop one of them")
    checkpoint = resolve_checkpoint(s.scorer_checkpoint or ScorerSettings().checkpoint)  # one line when missing
    check_kafka(s, [])  # a wrong Kafka address fails before minutes of server start-up, not after
    with tempfile.TemporaryDirectory(prefix="lrsa-run-serve-") as tmp:
        server = TritonServer(render_repository(Path(tmp) / "repository", checkpoint),
                              http_port=0, grpc_port=0, metrics_port=0, workdir=Path(tmp) / "triton")
        log.info("starting tritonserver for %s (--serve)", checkpoint)
        server.start(timeout_s=TRITON_READY_S)
        try:
            log.info("tritonserver ready: grpc %s, metrics %s (scrape it beside the worker)",
                     server.grpc_url, server.metrics_url)
            args.scorer_url, args.scorer_checkpoint = server.grpc_url, checkpoint
            return run_worker(args)
        finally:
            server.stop()

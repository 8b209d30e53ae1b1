"""`lrsa serve` (a local tritonserver with the fused SLM) and `lrsa export` (ONNX for production)."""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
import threading
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lrsa.offline_models import DEFAULT_MODEL
from lrsa.settings import LrsaSettings, add_settings_flags, settings_from_args

log = logging.getLogger(__name__)


class ServeSettings(LrsaSettings):
    """`lrsa serve` (env LRSA_SERVE_<FIELD>: its ports must not collide with the worker's settings)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_SERVE_", extra="ignore")

    checkpoint: Path = Field(DEFAULT_MODEL, description="fused SLM checkpoint folder to serve")
    repository: Path | None = Field(None, description="folder to render the model repository into (default: a temp dir)")
    host: str = Field("127.0.0.1", description="address tritonserver listens on")
    http_port: int = Field(8000, ge=0, description="HTTP port (0: a free one)")
    grpc_port: int = Field(8001, ge=0, description="gRPC port (0: a free one)")
    metrics_port: int = Field(8002, ge=0, description="Prometheus metrics port of Triton (0: a free one)")
    instances: int = Field(1, ge=1, description="model instances (each a Python-backend process)")
    threads: int = Field(0, ge=0, description="torch threads per instance (0: torch's default)")
    max_queue_delay_us: int = Field(2000, ge=0, description="longest a request waits for the dynamic batcher")


class ExportSettings(LrsaSettings):
    """`lrsa export` (env LRSA_EXPORT_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_EXPORT_", extra="ignore")

    checkpoint: Path = Field(DEFAULT_MODEL, description="fused SLM checkpoint folder to export")
    out: Path = Field(Path("build/model_repository"), description="model repository to write the entry into")
    format: Literal["onnx"] = Field("onnx", description="export format")


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the fused SLM with a local tritonserver until Ctrl-C")
    add_settings_flags(p, ServeSettings)
    p.set_defaults(func=_serve)
    p = sub.add_parser("export", help="export the fused SLM (ONNX + a Triton onnxruntime repository entry)")
    add_settings_flags(p, ExportSettings)
    p.set_defaults(func=_export)


def _serve(args: argparse.Namespace) -> int:
    from lrsa.model_pack import resolve_checkpoint

    s = settings_from_args(ServeSettings, args)
    s.checkpoint = resolve_checkpoint(s.checkpoint)  # a ModelFileError is one line and exit 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="lrsa-serve-") as tmp:
        return _serve_until(s, Path(tmp), stop)


def _serve_until(s: ServeSettings, tmp: Path, stop: threading.Event) -> int:
    from serving.triton_server import TritonServer, render_repository

    repo = render_repository(s.repository or tmp / "repository", s.checkpoint, instance_count=s.instances,
                             threads=s.threads, max_queue_delay_us=s.max_queue_delay_us)
    server = TritonServer(repo, host=s.host, http_port=s.http_port, grpc_port=s.grpc_port,
                          metrics_port=s.metrics_port, workdir=tmp)
    with server:
        print(f"tritonserver ready: grpc {server.grpc_url}  http {server.http_url}  metrics {server.metrics_url}",
              flush=True)
        while not stop.wait(1.0):
            if not server.running():
                log.error("tritonserver exited unexpectedly:\n%s", server.log_tail())
                return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    from serving.export_onnx import export_onnx

    s = settings_from_args(ExportSettings, args)
    path = export_onnx(s.checkpoint, s.out)
    print(path)
    return 0

"""`lrsa demo` stopped by SIGTERM (a `timeout`, a service manager) stops what it started.

Before the fix its Kafka broker, tritonserver and worker outlived it: Python's default SIGTERM
action skips the `finally` blocks that stop them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from repo_paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.triton, pytest.mark.ray]

ROOT = REPO


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""


def _wait_for_pipeline(demo: psutil.Process, timeout_s: float) -> list[psutil.Process]:
    """The demo's processes once its worker's ingest actors run: Kafka, tritonserver and Ray are
    all up by then. (Stopped earlier, inside ray.init, Ray's own agents outlive the raylet by
    about a minute before they notice it is gone.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and demo.is_running():
        procs = _descendants(demo)
        if any(_name(p) == "ray::IngestActor" for p in procs):
            return procs
        time.sleep(0.5)
    pytest.fail(f"the demo's ingest actors did not start within {timeout_s:.0f}s")


def test_sigterm_stops_kafka_triton_worker_and_ray(tiny_checkpoint: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "lrsa_cli.main", "demo", "--checkpoint", str(tiny_checkpoint),
           "--no-rationale", "--idle-s", "120"]
    popen = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "demo.log", "wb"))
    demo = psutil.Process(popen.pid)
    procs: list[psutil.Process] = []
    try:
        procs = _wait_for_pipeline(demo, timeout_s=240)
        names = {_name(p) for p in procs}
        assert {"java", "tritonserver", "raylet"} <= names, names
        assert any("lrsa_cli.main run" in _cmdline(p) for p in procs)
        popen.send_signal(signal.SIGTERM)
        assert popen.wait(timeout=120) == 128 + signal.SIGTERM
        _, alive = psutil.wait_procs(procs, timeout=30)
        assert not alive, [f"{p.pid} {_cmdline(p)[:120]}" for p in alive]
    finally:
        for p in [*_descendants(demo), *procs]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if popen.poll() is None:
            popen.kill()

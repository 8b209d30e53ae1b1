"""Start, wait for and stop a real `tritonserver` process (the binary shipped in nvidia-pytriton).

The bundled server has only the Python backend. It needs three things from us:
- the Python backend stub built for *this* interpreter, copied next to libtriton_python.so;
- LD_LIBRARY_PATH with this Python's LIBDIR (the stub embeds libpython) and pytriton's own libs;
- this interpreter's bin/ first on PATH, so the stub runs with the virtualenv's site-packages.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lrsa.ports import free_ports

log = logging.getLogger(__name__)

REPOSITORY_TEMPLATE = Path(__file__).resolve().parent / "model_repository"
PYTHON_MODEL = "lrsa_fused"
ONNX_MODEL = "lrsa_fused_onnx"


def pytriton_dir() -> Path:
    import pytriton  # only to locate the shipped server; we do not use pytriton's API

    return Path(pytriton.__file__).resolve().parent


def render_repository(dest: Path, checkpoint: Path, *, models: tuple[str, ...] = (PYTHON_MODEL,),
                      instance_count: int | None = None, max_queue_delay_us: int | None = None,
                      threads: int | None = None) -> Path:
    """Copy the model repository template to `dest`, pointing its models at `checkpoint`.

    The committed config.pbtxt files stay generic; the checkpoint (and optional tuning knobs) are
    written into the rendered copy, so no path is baked into code or the repository.
    """
    from lrsa.model_pack import is_packed, resolve_checkpoint

    if is_packed(checkpoint):  # served from its unpacked, checked folder; other paths as given
        checkpoint = resolve_checkpoint(checkpoint)
    dest.mkdir(parents=True, exist_ok=True)
    for name in models:
        src = REPOSITORY_TEMPLATE / name
        shutil.copytree(src, dest / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        cfg_path = dest / name / "config.pbtxt"
        cfg = cfg_path.read_text()
        cfg = set_parameter(cfg, "checkpoint", str(Path(checkpoint).resolve()))
        if threads is not None:
            cfg = set_parameter(cfg, "torch_threads", str(threads))
        if instance_count is not None:
            cfg = re.sub(r"count:\s*\d+", f"count: {instance_count}", cfg, count=1)
        if max_queue_delay_us is not None:
            cfg = re.sub(r"max_queue_delay_microseconds:\s*\d+",
                         f"max_queue_delay_microseconds: {max_queue_delay_us}", cfg)
        cfg_path.write_text(cfg)
    return dest


def set_parameter(config: str, key: str, value: str) -> str:
    """Set the string value of `parameters { key: "<key>" ... }` in a config.pbtxt text."""
    pattern = re.compile(r'(key:\s*"%s"\s*value:\s*\{\s*string_value:\s*)"[^"]*"' % re.escape(key))
    if not pattern.search(config):
        raise ValueError(f"config.pbtxt has no parameter {key!r}")
    return pattern.sub(lambda m: f'{m.group(1)}"{value}"', config)


@dataclass
class TritonServer:
    """One `tritonserver` process on loopback; usable as a context manager.

    Ports default to Triton's usual 8000/8001/8002; pass 0 for a free ephemeral port.
    """

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    workdir: Path | None = None
    exit_timeout_s: int = 10
    extra_args: list[str] = field(default_factory=list)
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _log_path: Path | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        spare = iter(free_ports(3, self.host))  # chosen together, so never the same port twice
        self.http_port = self.http_port or next(spare)
        self.grpc_port = self.grpc_port or next(spare)
        self.metrics_port = self.metrics_port or next(spare)
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="lrsa-triton-"))

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, wait: bool = True, timeout_s: float = 180.0) -> TritonServer:
        if self.running():
            return self
        backends = self._prepare_backends()
        self._log_path = self.workdir / "tritonserver.log"
        cmd = [
            str(pytriton_dir() / "tritonserver" / "bin" / "tritonserver"),
            f"--model-repository={Path(self.repository).resolve()}",
            f"--backend-directory={backends}",
            # A unique shm prefix: several servers (tests, other users) can share /dev/shm.
            f"--backend-config=python,shm-region-prefix-name=lrsa{uuid.uuid4().hex[:8]}_",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true", "--allow-cpu-metrics=true", "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            *self.extra_args,
        ]
        log.info("starting tritonserver: grpc %s, http %s, metrics %s (log %s)",
                 self.grpc_url, self.http_url, self.metrics_url, self._log_path)
        with open(self._log_path, "ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self._env(),
                                          start_new_session=True)
        if wait:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"tritonserver exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.ready():
                log.info("tritonserver ready (pid %s)", self.pid)
                return
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM (Triton drains in-flight requests for exit_timeout_s), then SIGKILL."""
        if not self.running():
            return
        timeout_s = timeout_s if timeout_s is not None else self.exit_timeout_s + 10
        log.info("stopping tritonserver (pid %s)", self.pid)
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("tritonserver did not stop in %.0fs; killing its process group", timeout_s)
            os.killpg(self._proc.pid, signal.SIGKILL)  # the stubs are in the same group
            self._proc.wait()

    def kill(self) -> None:
        """Crash the server (SIGKILL to its group, stubs included): for fault tests."""
        if self.running():
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def log_tail(self, n: int = 40) -> str:
        if not self._log_path or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-n:])

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare_backends(self) -> Path:
        """A private backends/ dir: the shipped python backend plus the stub for this Python."""
        backends = self.workdir / "backends"
        python_dir = backends / "python"
        if not (python_dir / "triton_python_backend_stub").exists():
            shutil.copytree(pytriton_dir() / "tritonserver" / "backends" / "python", python_dir,
                            dirs_exist_ok=True)
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            stub = pytriton_dir() / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
            shutil.copy2(stub, python_dir / "triton_python_backend_stub")
        return backends

    def _env(self) -> dict[str, str]:
        env = os.environ.copy()
        libs = [sysconfig.get_config_var("LIBDIR"), str(pytriton_dir().parent / "nvidia_pytriton.libs")]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(libs)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env

"""A real multi-node Ray cluster on loopback for scale-out tests: `ray start --head` plus
`ray start --address` nodes, each with its own CPU count, custom resources and environment.

Every node runs with a clean environment (PATH, HOME, PYTHONPATH and what the test adds): none of
the test process's LRSA_* variables reach the actors, as on a real cluster. Nodes are stopped by
killing their own process trees (never `ray stop`, which would end every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from streaming_helpers import kill_tree

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "PYTHONPATH": f"{TESTS_DIR}{os.pathsep}{REPO}", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.update(extra)
    return env


class LoopbackRayCluster:
    """start_head() then add_node(); `address` for ray.init / `lrsa run --ray-address`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, args: list[str], num_cpus: int, resources: dict[str, float],
               env: dict[str, str]) -> subprocess.Popen:
        cmd = [str(RAY), "start", "--block", f"--num-cpus={num_cpus}", "--num-gpus=0",
               f"--resources={json.dumps(resources)}", "--node-ip-address=127.0.0.1",
               f"--dashboard-agent-listen-port={free_port()}", f"--object-store-memory={100 * 1024 * 1024}",
               "--disable-usage-stats", *args]
        log = open(self.log_dir / f"ray-{name}.log", "ab")
        proc = subprocess.Popen(cmd, env=clean_env(**env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.log_dir)
        self.nodes[name] = proc
        return proc

    def start_head(self, num_cpus: int = 1, resources: dict[str, float] | None = None, **env: str) -> None:
        self._start("head", ["--head", f"--port={self.port}", "--include-dashboard=false",
                             f"--ray-client-server-port={free_port()}"], num_cpus, resources or {}, env)

    def add_node(self, name: str, num_cpus: int = 1, resources: dict[str, float] | None = None, **env: str) -> None:
        self._start(name, [f"--address={self.address}"], num_cpus, resources or {}, env)

    def wait_nodes(self, n: int, timeout_s: float = 90) -> None:
        """Until n nodes are alive (asked of the cluster by the connected driver)."""
        import ray

        deadline = time.monotonic() + timeout_s
        while sum(node["Alive"] for node in ray.nodes()) < n:
            for name, proc in self.nodes.items():
                assert proc.poll() is None, f"ray node {name} exited: {self.log_tail(name)}"
            assert time.monotonic() < deadline, f"{n} Ray nodes not up in {timeout_s}s"
            time.sleep(0.5)

    def connect(self, timeout_s: float = 90) -> None:
        """ray.init against the head once its GCS answers (the head takes a while to start)."""
        import ray

        deadline = time.monotonic() + timeout_s
        while True:
            assert self.nodes["head"].poll() is None, f"ray head exited: {self.log_tail('head')}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"Ray head not up in {timeout_s}s"
                time.sleep(0.5)
        ray.init(address=self.address, log_to_driver=False, configure_logging=False)

    def kill(self, name: str) -> None:
        kill_tree(self.nodes[name].pid)

    def log_tail(self, name: str) -> str:
        return (self.log_dir / f"ray-{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for name in list(self.nodes):
            kill_tree(self.nodes.pop(name).pid)

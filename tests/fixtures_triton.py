"""Triton fixtures (owned by serving): a tiny fused-SLM checkpoint and a real tritonserver.

`triton_server` is one session-wide server on free loopback ports; tests that stop or kill a
server start their own with `start_triton` so the shared one stays up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving.triton_server import TritonServer, render_repository


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lrsa.model import tiny_test_checkpoint

    return tiny_test_checkpoint(tmp_path_factory.mktemp("tiny-ckpt"))


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    # One torch thread: the machine is small and shared; dynamic batching still applies.
    return render_repository(tmp_path_factory.mktemp("triton-repo"), tiny_checkpoint, threads=1)


@pytest.fixture(scope="session")
def start_triton(tmp_path_factory: pytest.TempPathFactory, triton_repository: Path
                 ) -> Iterator[Callable[..., TritonServer]]:
    """Factory: a started tritonserver on free ports (stopped at the end of the session)."""
    servers: list[TritonServer] = []

    def start(**kwargs) -> TritonServer:
        kwargs.setdefault("repository", triton_repository)
        server = TritonServer(http_port=0, grpc_port=0, metrics_port=0, exit_timeout_s=3,
                              workdir=tmp_path_factory.mktemp("triton"), **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def triton_server(start_triton: Callable[..., TritonServer]) -> TritonServer:
    return start_triton()

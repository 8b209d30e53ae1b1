"""Free TCP ports for the local services the project starts (Kafka, Triton, metrics)."""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports. The sockets stay bound until all are chosen: ports taken one
    after another can repeat, since the kernel may hand a just-released port out again (this once
    gave Kafka's broker and controller the same port)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]

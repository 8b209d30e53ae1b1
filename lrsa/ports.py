"""TCP addresses: free ports for the local services the project starts (Kafka, Triton, metrics),
and waiting, with a deadline, for a service address to answer (a wrong address fails fast)."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

from lrsa.settings import SettingsError

POLL_S = 0.5  # between connection attempts while the deadline lasts


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


class KafkaUnreachableError(SettingsError):
    """No broker answers at the bootstrap address."""


def unreachable_message(bootstrap: str, waited_s: float) -> str:
    return (f"no Kafka broker answers at {bootstrap} (waited {waited_s:.0f} s): start the local one with "
            f"`lrsa stack up` (`lrsa stack status` shows its address), or pass --bootstrap-servers HOST:PORT "
            f"(env LRSA_BOOTSTRAP_SERVERS)")


def wait_reachable(bootstrap: str, timeout_s: float) -> None:
    """Return once a TCP connection to one of the bootstrap addresses succeeds; raise
    KafkaUnreachableError after timeout_s."""
    addresses = [_address(a) for a in bootstrap.split(",") if a.strip()]
    if not addresses or any(a is None for a in addresses):
        raise SettingsError(f"--bootstrap-servers {bootstrap!r} is not a comma-separated list of HOST:PORT")
    started = time.monotonic()
    while True:
        for host, port in addresses:
            try:
                with socket.create_connection((host, port), timeout=min(3.0, timeout_s)):
                    return
            except OSError:
                continue
        waited = time.monotonic() - started
        if waited + POLL_S > timeout_s:
            raise KafkaUnreachableError(unreachable_message(bootstrap, waited))
        time.sleep(POLL_S)


def _address(text: str) -> tuple[str, int] | None:
    host, _, port = text.strip().rpartition(":")
    try:
        return host.strip("[]") or "localhost", int(port)
    except ValueError:
        return None

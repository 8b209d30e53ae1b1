"""A Kafka cluster on loopback: N KRaft nodes (each broker + controller, one quorum), every topic
replicated to 3 nodes (at most N) with min.insync.replicas a majority, so acks=all writes and
transactions go on while one node is down. `lrsa stack up --brokers 3`; the tests kill and restart
single nodes (`kill(i)`, `restart(i)`).

Each node is a KafkaStack in <dir>/node-<i> with its own ports (kept in its stack.json), all
formatted with the cluster id kept in <dir>/cluster.json.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from pathlib import Path

from lrsa.ports import free_ports
from workers.devstack.kafka_stack import KafkaStack


class KafkaCluster:
    def __init__(self, data_dir: Path, brokers: int = 3, heap: str = "384m") -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "cluster.json"
        if meta.exists():  # the cluster's identity and size stay with its data
            saved = json.loads(meta.read_text())
            cluster_id, brokers = saved["cluster_id"], saved["brokers"]
        else:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if cluster_id.startswith("-"):
                cluster_id = "A" + cluster_id[1:]
            meta.write_text(json.dumps({"cluster_id": cluster_id, "brokers": brokers}))
        self.replication = min(3, brokers)
        ports = iter(free_ports(2 * brokers))
        # a node's ports once chosen stay in its stack.json; first use picks free ones
        self.nodes = [KafkaStack(self.dir / f"node-{i}", port=None, heap=heap, node_id=i, cluster_id=cluster_id,
                                 replication=self.replication)
                      for i in range(1, brokers + 1)]
        for node in self.nodes:
            if node._load() is None:
                node.port, node.controller_port = next(ports), next(ports)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.voters = voters

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def up(self, timeout_s: float = 120.0) -> str:
        """Start every node not running, then wait until each answers (the quorum needs a majority)."""
        procs = {n.node_id: n.start() for n in self.nodes if not n.running_pid()}
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            if node.node_id in procs:
                node._wait_ready(procs[node.node_id], max(1.0, deadline - time.monotonic()))
        return self.bootstrap

    def down(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM every node at once (one by one, the last nodes would wait for a quorum that is
        gone), SIGKILL what is left after timeout_s."""
        pids = {n.node_id: n.running_pid() for n in self.nodes}
        for pid in filter(None, pids.values()):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(n.running_pid() for n in self.nodes) and time.monotonic() < deadline:
            for pid in filter(None, pids.values()):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.2)
        for node in self.nodes:
            if node.running_pid():
                self.kill(node.node_id)
            node._save(None)
        return any(pids.values())

    def running(self) -> list[int]:
        return [n.node_id for n in self.nodes if n.running_pid()]

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (a crash: no clean shutdown)."""
        node = self.nodes[node_id - 1]
        pid = node.running_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while node.running_pid() and time.monotonic() < deadline:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.1)
        node._save(None)

    def restart(self, node_id: int, timeout_s: float = 120.0) -> None:
        node = self.nodes[node_id - 1]
        node._wait_ready(node.start(), timeout_s)

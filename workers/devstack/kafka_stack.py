"""The embedded local Kafka: one KRaft node (broker + controller) on loopback, run from the jars
that deploy/kafka/pom.xml fetches from Maven Central.

`KafkaStack(dir).up()` formats the storage once, starts `kafka.Kafka` as a detached JVM and waits
until it answers; `down()` stops it with SIGTERM (a clean shutdown), SIGKILL as a last resort.
State (pid, ports) lives in `<dir>/stack.json` so that `lrsa stack down` works from another process.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from lrsa.ports import free_ports
from lrsa.kafka_security import KafkaSecurity
from lrsa.paths import is_checkout, resource, state_dir
from workers.config import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

KAFKA_DEPLOY = resource("deploy/kafka")
LOG4J_CONFIG = KAFKA_DEPLOY / "log4j2.properties"


def _build_dir() -> Path:
    """Where Maven runs the committed pom: beside it in a checkout; in an installed wheel (whose
    files are read-only) a copy of the pom in the state dir."""
    return KAFKA_DEPLOY if is_checkout() else state_dir() / "kafka-build"


def lib_dir() -> Path:
    return _build_dir() / "target" / "lib"


def ensure_jars(lib: Path | None = None) -> Path:
    """Fetch the broker jars with Maven on first use; later calls reuse them."""
    lib = lib or lib_dir()
    if not list(lib.glob("kafka_2.13-*.jar")):
        build = _build_dir()
        if build != KAFKA_DEPLOY:
            build.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(KAFKA_DEPLOY / "pom.xml", build / "pom.xml")
        log.info("fetching the Kafka jars from Maven Central into %s (first start only)", lib)
        subprocess.run(["mvn", "-q", "-B", "-f", str(build / "pom.xml"),
                        "dependency:copy-dependencies"], check=True)
    return lib


@dataclass
class StackState:
    pid: int | None
    port: int
    controller_port: int
    sasl_port: int | None = None
    sasl_ssl_port: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def _add_sasl_listener(props: dict, protocol: str, port: int, users: dict[str, str] | None) -> None:
    """A client listener named after `protocol` where these users log in (PLAIN, SCRAM-SHA-512)."""
    name = protocol.lower()
    props["listeners"] += f",{protocol}://127.0.0.1:{port}"
    props["advertised.listeners"] += f",{protocol}://127.0.0.1:{port}"
    props["listener.security.protocol.map"] += f",{protocol}:{protocol}"
    props["sasl.enabled.mechanisms"] = "PLAIN,SCRAM-SHA-512"
    plain = " ".join(f'user_{user}="{password}"' for user, password in (users or {}).items())
    props[f"listener.name.{name}.plain.sasl.jaas.config"] = \
        f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain};"
    props[f"listener.name.{name}.scram-sha-512.sasl.jaas.config"] = \
        "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def _server_properties(data_dir: Path, port: int, controller_port: int, sasl_port: int | None = None,
                       sasl_users: dict[str, str] | None = None, node_id: int = 1, voters: str | None = None,
                       replication: int = 1, sasl_ssl_port: int | None = None,
                       tls_keystore_pem: Path | None = None, mtls_port: int | None = None,
                       tls_client_ca: Path | None = None) -> str:
    """One KRaft node (broker + controller). A cluster (workers/devstack/kafka_cluster.py) gives each node its
    id, the quorum's voters and the replication its internal topics and new topics get."""
    props = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters or f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data_dir / "logs",
        "num.partitions": 4,
        "auto.create.topics.enable": "true",
        # Single node: the internal topics cannot have more than one replica. A cluster: every
        # partition on `replication` nodes, writes acknowledged by a majority (acks=all).
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_insync(replication),
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.replication.factor": replication,
        "default.replication.factor": replication,
        "min.insync.replicas": min_insync(replication),
        "group.initial.rebalance.delay.ms": 0,
        # Room for a 10 MB image as base64 (~14 MB) in one record.
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "replica.fetch.max.bytes": MAX_MESSAGE_BYTES,
        "socket.request.max.bytes": 4 * MAX_MESSAGE_BYTES,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "log.retention.hours": 24,
    }
    if sasl_port:  # a second client listener that authenticates: SASL PLAIN and SCRAM-SHA-512
        _add_sasl_listener(props, "SASL_PLAINTEXT", sasl_port, sasl_users)
    if sasl_ssl_port:  # the same users over TLS: the broker's key and certificate chain from one PEM file
        _add_sasl_listener(props, "SASL_SSL", sasl_ssl_port, sasl_users)
        # PEM keystore: an unencrypted PKCS#8 key, so no ssl.key.password (Kafka refuses one then)
        props["listener.name.sasl_ssl.ssl.keystore.type"] = "PEM"
        props["listener.name.sasl_ssl.ssl.keystore.location"] = tls_keystore_pem
    if mtls_port:  # mutual TLS: the client proves itself with a certificate the given CA signed
        props["listeners"] += f",SSL://127.0.0.1:{mtls_port}"
        props["advertised.listeners"] += f",SSL://127.0.0.1:{mtls_port}"
        props["listener.security.protocol.map"] += ",SSL:SSL"
        props["listener.name.ssl.ssl.keystore.type"] = "PEM"
        props["listener.name.ssl.ssl.keystore.location"] = tls_keystore_pem
        props["listener.name.ssl.ssl.truststore.type"] = "PEM"
        props["listener.name.ssl.ssl.truststore.location"] = tls_client_ca
        props["listener.name.ssl.ssl.client.auth"] = "required"
    return "".join(f"{k}={v}\n" for k, v in props.items())


def min_insync(replication: int) -> int:
    """Replicas that must have a write before it is acknowledged: a majority (2 of 3)."""
    return replication // 2 + 1


class KafkaStack:
    def __init__(self, data_dir: Path, port: int | None = None, controller_port: int = 0, heap: str = "512m",
                 sasl_users: dict[str, str] | None = None, node_id: int = 1, voters: str | None = None,
                 replication: int = 1, cluster_id: str | None = None, tls_keystore_pem: Path | None = None,
                 tls_client_ca: Path | None = None):
        """port None: the data dir's port, else 9092; 0: a free port. Same for controller_port.
        sasl_users (name -> password): also a SASL_PLAINTEXT listener (`sasl_bootstrap`) where these
        users log in with PLAIN or SCRAM-SHA-512. tls_keystore_pem (with sasl_users): also a SASL_SSL
        listener (`sasl_ssl_bootstrap`) for the same users, its TLS key (unencrypted PKCS#8) and
        certificate chain read from that one PEM file. tls_client_ca (with tls_keystore_pem): also an
        SSL listener with mutual TLS (`mtls_bootstrap`): a client gets in only with a certificate
        this CA signed."""
        if tls_keystore_pem and not sasl_users:
            raise ValueError("a SASL_SSL listener (tls_keystore_pem) needs sasl_users")
        if tls_client_ca and not tls_keystore_pem:
            raise ValueError("a mutual-TLS listener (tls_client_ca) needs the broker's tls_keystore_pem")
        self.tls_client_ca = Path(tls_client_ca).resolve() if tls_client_ca else None
        self.dir = Path(data_dir)
        self.heap = heap
        self.sasl_users = sasl_users
        self.tls_keystore_pem = Path(tls_keystore_pem).resolve() if tls_keystore_pem else None
        self.node_id, self.voters, self.replication, self.cluster_id = node_id, voters, replication, cluster_id
        wanted = (2 if sasl_users else 0) + (1 if self.tls_client_ca else 0)
        spare_client = iter(free_ports(wanted) if wanted else ())  # chosen together: never one port twice
        self.sasl_port = next(spare_client) if sasl_users else None
        self.sasl_ssl_port = next(spare_client) if self.tls_keystore_pem else None
        self.mtls_port = next(spare_client) if self.tls_client_ca else None
        saved = self._load()
        # Ports chosen once stay with the data dir: the quorum address is part of the cluster.
        if saved and not port:
            self.port, self.controller_port = saved.port, saved.controller_port
        else:
            spare = iter(free_ports(2))  # chosen together, so never the same port twice
            self.port = next(spare) if port == 0 else (port or 9092)
            self.controller_port = controller_port or next(spare)
        if self.port == self.controller_port:
            raise ValueError(f"the broker and the controller need two ports, both are {self.port}")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.sasl_port}" if self.sasl_port else None

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.sasl_ssl_port}" if self.sasl_ssl_port else None

    @property
    def mtls_bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.mtls_port}" if self.mtls_port else None

    @property
    def state_file(self) -> Path:
        return self.dir / "stack.json"

    def _load(self) -> StackState | None:
        try:
            return StackState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save(self, pid: int | None) -> None:
        self.state_file.write_text(json.dumps(asdict(StackState(pid, self.port, self.controller_port,
                                                                self.sasl_port, self.sasl_ssl_port))))

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return ["java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.dir}",
                "-cp", f"{ensure_jars()}/*", main, *args]

    def running_pid(self) -> int | None:
        state = self._load()
        if state is None or state.pid is None:
            return None
        try:
            os.kill(state.pid, 0)
        except ProcessLookupError:
            return None
        return state.pid

    def up(self, timeout_s: float = 90.0) -> str:
        """Start the broker (formatting its storage on first use); returns the bootstrap address."""
        if self.running_pid():
            log.info("Kafka already running at %s", self.bootstrap)
            return self.bootstrap
        proc = self.start()
        self._wait_ready(proc, timeout_s)
        return self.bootstrap

    def start(self) -> subprocess.Popen:
        """Start the JVM without waiting for it (a cluster starts all its nodes, then waits)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text(_server_properties(self.dir, self.port, self.controller_port, self.sasl_port,
                                            self.sasl_users, self.node_id, self.voters, self.replication,
                                            self.sasl_ssl_port, self.tls_keystore_pem, self.mtls_port,
                                            self.tls_client_ca))
        if not (self.dir / "logs" / "meta.properties").exists():
            self._format(props, self.cluster_id)
        out = open(self.dir / "broker.out", "ab")
        proc = subprocess.Popen(self._java("kafka.Kafka", str(props), heap=self.heap),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # survives the launching shell
        out.close()
        self._save(proc.pid)
        log.info("starting Kafka (pid %d) at %s, data in %s", proc.pid, self.bootstrap, self.dir)
        return proc

    def _format(self, props: Path, cluster_id: str | None = None) -> None:
        # URL-safe base64 may start with "-" (1 in 64): hence --cluster-id=ID, which argparse
        # cannot mistake for an option.
        cluster_id = cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        scram = [f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]"
                 for name, password in (self.sasl_users or {}).items()]
        done = subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                                         "-c", str(props), *scram),
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"formatting Kafka storage failed ({done.returncode}): "
                               f"{(done.stdout + done.stderr).strip()[-2000:]}; see {self.dir / 'server.log'}")

    def _wait_ready(self, proc: subprocess.Popen, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        quiet = logging.getLogger("kafka")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # refused connections are expected while it starts
        try:
            self._poll_ready(proc, deadline)
        finally:
            quiet.setLevel(level)

    def _poll_ready(self, proc: subprocess.Popen, deadline: float) -> None:
        from kafka import KafkaAdminClient

        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Kafka exited with {proc.returncode}; see {self.dir / 'broker.out'} "
                                   f"and {self.dir / 'server.log'}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                try:
                    admin.describe_cluster()
                    return
                finally:
                    admin.close()
            except Exception:  # not listening yet
                time.sleep(0.5)
        self.down()
        raise TimeoutError(f"Kafka did not answer at {self.bootstrap} in time; see {self.dir / 'server.log'}")

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker cleanly; returns whether one was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            log.warning("Kafka (pid %d) ignored SIGTERM for %ss; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        self._save(None)
        return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def create_topics(bootstrap: str, names: list[str], partitions: int = 4, replication: int = 1,
                  security: KafkaSecurity | None = None) -> None:
    """Create the topics that do not exist yet, sized for large messages; with replication > 1,
    acks=all writes need a majority of the replicas (min.insync.replicas). security: the clients'
    LRSA_KAFKA_* settings (none: PLAINTEXT, as the embedded broker's own listener)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","),
                             **(security.client_options() if security else {}))
    configs = {"max.message.bytes": str(MAX_MESSAGE_BYTES), "min.insync.replicas": str(min_insync(replication))}
    try:
        missing = [n for n in names if n not in set(admin.list_topics())]
        if missing:
            admin.create_topics(
                {n: {"num_partitions": partitions, "replication_factor": replication, "configs": configs}
                 for n in missing},
                wait_for_metadata=True)
    finally:
        admin.close()

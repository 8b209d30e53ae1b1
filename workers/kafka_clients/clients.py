"""Kafka clients configured the one way the worker, the benchmark and the tests need them."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer

from workers.config import KafkaClientSettings
from workers.kafka_clients.security import KafkaAuthError

T = TypeVar("T")


def consumer(settings: KafkaClientSettings, *topics: str, group_id: str | None,
             read_committed: bool = False, **extra: Any) -> KafkaConsumer:
    """A raw-bytes consumer with manual commits, able to fetch the largest allowed message."""
    return _connect(settings, lambda: KafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers.split(","),
        group_id=group_id,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.max_message_bytes,
        fetch_max_bytes=max(settings.max_message_bytes, 50 * 1024 * 1024),
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        metadata_max_age_ms=settings.metadata_max_age_ms,
        **{**settings.client_options(), **extra},
    ))


def producer(settings: KafkaClientSettings, transactional_id: str | None = None, **extra: Any) -> KafkaProducer:
    """acks=all, small linger for batching; transactional when given an id.

    kafka-python 3 has no buffer_memory bound: callers bound their unacknowledged sends themselves."""
    config: dict[str, Any] = dict(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=settings.max_message_bytes,
        retries=10,
    )
    if transactional_id:
        config.update(transactional_id=transactional_id, enable_idempotence=True)
    config.update(settings.client_options())
    config.update(extra)
    return _connect(settings, lambda: KafkaProducer(**config))


def admin(settings: KafkaClientSettings, **extra: Any):
    """A KafkaAdminClient with the settings' address and security."""
    from kafka import KafkaAdminClient

    return _connect(settings, lambda: KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers.split(","), **{**settings.client_options(), **extra}))


def _connect(settings: KafkaClientSettings, make: Callable[[], T]) -> T:
    """make(), with refused credentials or TLS reported as KafkaAuthError naming the settings
    (kafka-python reports them as 'no brokers available' after its bootstrap attempts)."""
    from kafka.errors import (KafkaConnectionError, KafkaTimeoutError, SaslAuthenticationFailedError,
                              UnsupportedSaslMechanismError)

    try:
        return make()
    except (SaslAuthenticationFailedError, UnsupportedSaslMechanismError) as e:
        raise KafkaAuthError(_auth_message(settings, e)) from None
    except (KafkaConnectionError, KafkaTimeoutError) as e:
        # kafka-python retries a refused login until its bootstrap timeout, then says only that it
        # timed out: a broker that accepts TCP but not this client refused its credentials or TLS
        if settings.kafka_security_protocol != "PLAINTEXT" and _reachable(settings.bootstrap_servers):
            tls = _tls_problem(settings)
            raise KafkaAuthError(_tls_message(settings, tls) if tls else _auth_message(settings, e)) from None
        raise


def _reachable(bootstrap_servers: str) -> bool:
    for address in bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
                return True
        except (OSError, ValueError):
            continue
    return False


def _tls_problem(settings: KafkaClientSettings) -> str | None:
    """Why a TLS handshake with the first reachable broker fails with these settings (kafka-python
    logs it and then reports only a timeout), or None when it succeeds or TLS is not used."""
    import ssl

    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile
                                             else None)
        context.check_hostname = settings.kafka_ssl_check_hostname
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(str(settings.kafka_ssl_certfile),
                                    str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None)
    except (OSError, ssl.SSLError) as e:
        return f"the TLS files cannot be loaded ({type(e).__name__}: {e})"
    for address in settings.bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        host = host.strip("[]")
        try:
            with socket.create_connection((host, int(port)), timeout=3) as sock, \
                    context.wrap_socket(sock, server_hostname=host):
                return None
        except ssl.SSLError as e:
            return f"the TLS handshake with {address.strip()} failed ({type(e).__name__}: {e})"
        except (OSError, ValueError):
            continue
    return None


def _tls_message(settings: KafkaClientSettings, problem: str) -> str:
    return (f"Kafka at {settings.bootstrap_servers}: {problem}, so this client ({settings.describe()}) cannot "
            f"connect; check LRSA_KAFKA_SSL_CAFILE (the CA that signed the brokers' certificates; none: the "
            f"system's CAs), LRSA_KAFKA_SSL_CHECK_HOSTNAME and LRSA_KAFKA_SSL_CERTFILE/KEYFILE")


def _auth_message(settings: KafkaClientSettings, e: Exception) -> str:
    return (f"Kafka at {settings.bootstrap_servers} refused this client ({settings.describe()}): "
            f"{type(e).__name__}; check LRSA_KAFKA_SECURITY_PROTOCOL, LRSA_KAFKA_SASL_MECHANISM, "
            f"LRSA_KAFKA_SASL_USERNAME and LRSA_KAFKA_SASL_PASSWORD(_FILE) / the LRSA_KAFKA_SSL_* files")


class GroupLag:
    """Committed offsets of a group against the log end of its input topic, seen from outside
    the group (so a member that has no partitions yet cannot mistake that for 'drained')."""

    def __init__(self, settings: KafkaClientSettings, topic: str, group_id: str) -> None:
        self.topic, self.group_id, self._settings = topic, group_id, settings
        self._admin = admin(settings)
        self._consumer = _connect(settings, lambda: KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers.split(","), group_id=None, **settings.client_options()))

    def lag(self) -> dict[int, int]:
        """partition -> end offset minus committed offset (the whole partition when nothing is committed)."""
        from kafka import TopicPartition

        parts = [TopicPartition(self.topic, p) for p in self._consumer.partitions_for_topic(self.topic) or ()]
        ends = self._consumer.end_offsets(parts)
        committed = self._committed()
        start = self._consumer.beginning_offsets(parts)
        return {tp.partition: max(0, end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                                            else start[tp]))
                for tp, end in ends.items()}

    def _committed(self) -> dict:
        """The group's committed offsets, asked of its coordinator. kafka-python's admin client
        (3.0.12) keeps a group's coordinator id for its whole life and never forgets it: once that
        broker dies, every later call goes to the dead node and fails. So a failed call drops the
        admin client; the next call builds a fresh one, which looks the coordinator up again
        (the worker's --exit-when-idle waited forever on this after a coordinator's broker died).
        After a fail-over the new coordinator may answer without some of the group's commits (seen
        in CI for up to 90 s, not explained; docs/deploy.md): that overstates the lag, so an idle
        check only waits longer."""
        if self._admin is None:
            self._admin = admin(self._settings)
        try:
            return self._admin.list_group_offsets(self.group_id).get(self.group_id, {})
        except Exception:
            stale, self._admin = self._admin, None
            with contextlib.suppress(Exception):
                stale.close()
            raise

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
        self._consumer.close()


def assignment_strategy(name: str) -> tuple:
    """kafka-python's assignors for WorkerSettings.partition_assignment: eager = its default
    (range, then round-robin); cooperative-sticky = KIP-429 incremental hand-overs."""
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    if name == "cooperative-sticky":
        return (CooperativeStickyAssignor,)
    if name == "eager":
        return (RangePartitionAssignor, RoundRobinPartitionAssignor)
    raise ValueError(f"unknown partition assignment {name!r}: eager or cooperative-sticky")

"""The Kafka security settings (lrsa/kafka_security.py, in the core so the dashboard shares them),
plus what needs a Kafka client library: Quix Streams' ConnectionConfig for `lrsa aggregate`."""

from __future__ import annotations

from typing import Any

from lrsa.kafka_security import KafkaAuthError, KafkaSecurity, redact_in_kafka_logs

__all__ = ["KafkaAuthError", "KafkaSecurity", "quix_broker_address", "redact_in_kafka_logs"]


def quix_broker_address(security: KafkaSecurity, bootstrap_servers: str) -> Any:
    """Quix Streams' `broker_address`: the plain address when PLAINTEXT (as before), otherwise a
    ConnectionConfig carrying the security settings (librdkafka names, '.' -> '_')."""
    if security.kafka_security_protocol == "PLAINTEXT":
        return bootstrap_servers
    from quixstreams.kafka.configuration import ConnectionConfig

    options = {k.replace(".", "_"): v for k, v in security.librdkafka_options().items()}
    options["security_protocol"] = options["security_protocol"].lower()
    return ConnectionConfig(bootstrap_servers=bootstrap_servers, **options)

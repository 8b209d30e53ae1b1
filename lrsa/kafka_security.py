"""TLS and SASL settings of every Kafka client (worker, produce, aggregate, dashboard, admin, lag):
one class, mixed into KafkaClientSettings and DashboardSettings, turned into kafka-python options by
`client_options` and into librdkafka ones (Quix Streams, `lrsa aggregate`) by `librdkafka_options`.
In the core so that every room (workers/, dashboard/) can use it; it imports no Kafka client.

Secrets come from env (LRSA_KAFKA_SASL_PASSWORD) or, better, a file (LRSA_KAFKA_SASL_PASSWORD_FILE,
e.g. a mounted Kubernetes Secret); they are SecretStr, so logs and reprs show '**********'.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from lrsa.settings import LrsaSettings


_secrets: set[str] = set()


def _redacting(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name == "kafka" or record.name.startswith("kafka."):
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a malformed record: logging reports it itself
                return record
            if any(secret in message for secret in _secrets):
                for secret in _secrets:
                    message = message.replace(secret, "**********")
                record.msg, record.args = message, ()
        return record
    return factory


def redact_in_kafka_logs(secret: str) -> None:
    """kafka-python's DEBUG lines dump SASL requests byte for byte (the PLAIN password among
    them): every record of a kafka.* logger has the secret masked. A log-record factory (chained
    to the one in place, as Ray's is) rather than logger filters, so loggers made later are
    covered too and this core module needs no kafka import."""
    if not secret or secret in _secrets:
        return
    if not _secrets:
        logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))
    _secrets.add(secret)


class KafkaAuthError(ConnectionError):
    """The brokers refused this client's credentials or TLS settings: retrying cannot help."""


class KafkaSecurity(LrsaSettings):
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how the Kafka clients talk to the brokers: PLAINTEXT, SSL (TLS), "
        "SASL_PLAINTEXT or SASL_SSL (authenticated, over TLS)")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (SASL_* protocols)")
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (prefer the _FILE setting; "
                                                  "never logged)")
    kafka_sasl_password_file: Path | None = Field(None, description="file holding the SASL password (e.g. a "
                                                  "mounted Secret); read at start, trailing newline dropped")
    kafka_ssl_cafile: Path | None = Field(None, description="PEM CA bundle that signed the brokers' certificates "
                                          "(none: the system's)")
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM client private key (mutual TLS)")
    kafka_auth_timeout_s: float = Field(30.0, gt=0, description="a client whose first connection does not "
                                        "succeed in this time fails; a broker that answers but refuses the "
                                        "login (or TLS) fails it with an error naming the security settings")
    kafka_ssl_check_hostname: bool = Field(True, description="check that the broker certificate names its host")
    kafka_connect_timeout_s: float = Field(15.0, gt=0, description="how long a command waits at start for a Kafka "
                                           "broker to answer at the bootstrap address before it fails with one "
                                           "line saying what to do (a wrong address is a configuration error, "
                                           "not a crash to retry)")

    @model_validator(mode="before")
    @classmethod
    def _shared_env(cls, data: Any) -> Any:
        """Commands with their own env prefix (`lrsa aggregate`: LRSA_AGGREGATE_...) also read the
        shared LRSA_KAFKA_* names, so one set of variables (one Secret) secures every client; a
        flag or the command's own prefixed variable still wins."""
        if not isinstance(data, dict):
            return data
        shared = {name: os.environ[f"LRSA_{name.upper()}"] for name in KafkaSecurity.model_fields
                  if name not in data and f"LRSA_{name.upper()}" in os.environ}
        return {**shared, **data} if shared else data

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSecurity:
        if self.kafka_security_protocol.startswith("SASL"):
            if not self.kafka_sasl_username:
                raise ValueError(f"kafka_security_protocol {self.kafka_security_protocol} needs kafka_sasl_username")
            if self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
                raise ValueError("SASL needs kafka_sasl_password or kafka_sasl_password_file")
        return self

    def sasl_password(self) -> str | None:
        if self.kafka_sasl_password_file is not None:
            password = self.kafka_sasl_password_file.read_text().rstrip("\r\n")
        else:
            password = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
        if password:
            redact_in_kafka_logs(password)
        return password

    def inline_secrets(self) -> dict[str, Any]:
        """Overrides that carry the password itself instead of its file, for settings sent to actors
        on other nodes (which do not mount the driver's Secret); SecretStr keeps it out of logs."""
        if self.kafka_sasl_password_file is None:
            return {}
        return {"kafka_sasl_password": SecretStr(self.sasl_password() or ""), "kafka_sasl_password_file": None}

    def client_options(self) -> dict[str, Any]:
        """kafka-python options (consumer, producer and admin take the same ones)."""
        protocol = self.kafka_security_protocol
        options: dict[str, Any] = {"security_protocol": protocol,
                                   "bootstrap_timeout_ms": int(self.kafka_auth_timeout_s * 1000)}
        if protocol.startswith("SASL"):
            options.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                           sasl_plain_password=self.sasl_password())
        if protocol in ("SSL", "SASL_SSL"):
            options.update(ssl_check_hostname=self.kafka_ssl_check_hostname,
                           **{k: str(v) for k, v in (("ssl_cafile", self.kafka_ssl_cafile),
                                                     ("ssl_certfile", self.kafka_ssl_certfile),
                                                     ("ssl_keyfile", self.kafka_ssl_keyfile)) if v})
        return options

    def librdkafka_options(self) -> dict[str, Any]:
        """The same settings under librdkafka's names (Quix Streams' ConnectionConfig takes them with
        '_' for '.'): security.protocol, sasl.*, ssl.*."""
        protocol = self.kafka_security_protocol
        options: dict[str, Any] = {"security.protocol": protocol}
        if protocol.startswith("SASL"):
            options.update({"sasl.mechanism": self.kafka_sasl_mechanism, "sasl.username": self.kafka_sasl_username,
                            "sasl.password": self.sasl_password()})
        if protocol in ("SSL", "SASL_SSL"):
            options["ssl.endpoint.identification.algorithm"] = "https" if self.kafka_ssl_check_hostname else "none"
            options.update({k: str(v) for k, v in (("ssl.ca.location", self.kafka_ssl_cafile),
                                                   ("ssl.certificate.location", self.kafka_ssl_certfile),
                                                   ("ssl.key.location", self.kafka_ssl_keyfile)) if v})
        return options

    def describe(self) -> str:
        """For error messages: the protocol and user, never the password."""
        who = f" as {self.kafka_sasl_username!r} ({self.kafka_sasl_mechanism})" \
            if self.kafka_security_protocol.startswith("SASL") else ""
        return f"{self.kafka_security_protocol}{who}"

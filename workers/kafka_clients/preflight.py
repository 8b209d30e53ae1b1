"""Fail fast on a Kafka address or topic that cannot work: a configuration error, said in one line.

A command that needs Kafka checks, before it starts anything (Ray, actors, threads), that a broker
answers at the bootstrap address within `kafka_connect_timeout_s` (a broker that is still starting
gets that long), that this client is let in, and that the topics it reads exist. Each failure is a
`SettingsError` (exit 2, no traceback) naming what was tried and what to do; kafka-python's own
connection errors are kept out of the log while it checks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from lrsa.kafka_security import KafkaAuthError
from lrsa.ports import KafkaUnreachableError, wait_reachable
from lrsa.settings import SettingsError
from workers.kafka_clients import clients as kafka_io

__all__ = ["KafkaUnreachableError", "TopicMissingError", "check_kafka", "wait_reachable"]


class TopicMissingError(SettingsError):
    """A topic the command reads does not exist."""


@contextlib.contextmanager
def _quiet_kafka() -> Iterator[None]:
    """kafka-python logs every failed attempt at ERROR/WARNING; the check says it once instead."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_kafka(settings: Any, topics: Sequence[str] = (), *, missing_is_error: bool = False) -> list[str]:
    """The bootstrap address answers and this client is let in (else a SettingsError in one line);
    returns the topics of `topics` that do not exist. With missing_is_error a missing topic is a
    TopicMissingError; otherwise the caller says how it goes on (a broker with
    auto.create.topics.enable creates a topic on its first use, so a worker may start first).
    `settings`: any settings with bootstrap_servers and the KafkaSecurity fields."""
    timeout_s = settings.kafka_connect_timeout_s
    wait_reachable(settings.bootstrap_servers, timeout_s)
    ms = int(timeout_s * 1000)
    with _quiet_kafka():
        try:
            client = kafka_io.admin(settings, request_timeout_ms=max(ms, 1000), bootstrap_timeout_ms=ms)
        except KafkaAuthError as e:
            raise SettingsError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - kafka-python's bootstrap failures have no common base
            raise KafkaUnreachableError(f"Kafka at {settings.bootstrap_servers} accepts connections but does not "
                                        f"answer as a broker ({type(e).__name__}): is this the Kafka port? "
                                        f"`lrsa stack status` shows the local broker's address") from None
        try:
            existing = set(client.list_topics()) if topics else set()
        finally:
            client.close()
    missing = [t for t in topics if t not in existing]
    if missing and missing_is_error:
        raise TopicMissingError(missing_message(settings.bootstrap_servers, missing))
    return missing


def missing_message(bootstrap: str, missing: Sequence[str]) -> str:
    many = len(missing) > 1
    return (f"topic{'s' if many else ''} {', '.join(missing)} not found on Kafka at {bootstrap}: create "
            f"{'them' if many else 'it'} (`lrsa stack up --kafka-topics {','.join(missing)}` on the local stack), "
            f"or pass the right topic name")

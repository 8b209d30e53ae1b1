"""Kafka fixtures (owned by the streaming backbone): one real embedded broker per test session,
on free loopback ports in a temp dir, and a factory of fresh uniquely named topics."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator

import pytest

from streaming_helpers import kill_started_workers
from workers.devstack.kafka_stack import KafkaStack, create_topics


@pytest.fixture(scope="session")
def kafka_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaStack]:
    logging.getLogger("kafka").setLevel(logging.WARNING)
    stack = KafkaStack(tmp_path_factory.mktemp("kafka"), port=0, heap="384m")
    try:
        stack.up()
    except Exception as e:  # fail, never skip: a broker that cannot start is a broken set-up
        pytest.fail(f"embedded Kafka could not start (scripts/setup.sh installs Java and the jars): {e}")
    yield stack
    stack.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_stack: KafkaStack) -> str:
    return kafka_stack.bootstrap


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """make(prefix, partitions=...) -> a new topic name, created on the broker. Workers the test
    started are stopped with it, also when it failed."""
    counter = itertools.count()

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}-{os.getpid()}-{next(counter)}-{os.urandom(3).hex()}"
        create_topics(kafka_bootstrap, [name], partitions)
        return name

    yield make
    kill_started_workers()

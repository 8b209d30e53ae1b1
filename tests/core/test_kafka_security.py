"""Kafka clients with SASL (issue 22): a real broker with a SASL_PLAINTEXT listener (PLAIN and
SCRAM-SHA-512 users); the right credentials (password from a file) produce and consume, a wrong
password fails fast with an error naming the settings, consumes nothing, and no log line shows a
password."""

from __future__ import annotations

import logging
import time

import pytest

from workers.kafka_clients import clients as kafka_io
from workers.config import KafkaClientSettings
from workers.kafka_clients.security import KafkaAuthError
from workers.devstack.kafka_stack import KafkaStack, create_topics

pytestmark = [pytest.mark.kafka]

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def sasl_stack(tmp_path_factory):
    stack = KafkaStack(tmp_path_factory.mktemp("kafka-sasl"), port=0, heap="256m", sasl_users={"alice": PASSWORD})
    stack.up()
    yield stack
    stack.down()


def settings(stack: KafkaStack, mechanism: str, **kw) -> KafkaClientSettings:
    return KafkaClientSettings(bootstrap_servers=stack.sasl_bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                               kafka_sasl_mechanism=mechanism, kafka_sasl_username="alice", **kw)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_right_credentials_produce_and_consume(sasl_stack, tmp_path, caplog, mechanism) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")  # as a mounted Secret: trailing newline
    s = settings(sasl_stack, mechanism, kafka_sasl_password_file=secret)
    assert PASSWORD not in repr(s) and PASSWORD not in str(s.model_dump())
    topic = f"secure-{mechanism.lower()}"
    create_topics(sasl_stack.bootstrap, [topic], 1)  # over the plaintext listener
    with caplog.at_level(logging.DEBUG):
        producer = kafka_io.producer(s)
        for i in range(20):
            producer.send(topic, key=str(i).encode(), value=b'{"id": "%d", "text": "ok"}' % i)
        producer.flush(timeout=30)
        producer.close()
        consumer = kafka_io.consumer(s, topic, group_id=f"g-{mechanism}", auto_offset_reset="earliest")
        got, deadline = [], time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
        consumer.close()
    assert sorted(int(r.key) for r in got) == list(range(20))
    assert PASSWORD not in caplog.text


def test_wrong_password_fails_fast_with_a_clear_error_and_consumes_nothing(sasl_stack, caplog) -> None:
    topic = "secure-refused"
    create_topics(sasl_stack.bootstrap, [topic], 1)
    s = settings(sasl_stack, "SCRAM-SHA-512", kafka_sasl_password="not-the-password", kafka_auth_timeout_s=5)
    start = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(KafkaAuthError) as refused:
        kafka_io.consumer(s, topic, group_id="g-refused", auto_offset_reset="earliest")
    assert time.monotonic() - start < 20
    message = str(refused.value)
    assert "refused" in message and "alice" in message and "LRSA_KAFKA_SASL_PASSWORD" in message
    assert "not-the-password" not in message and "not-the-password" not in caplog.text
    admin = kafka_io.admin(KafkaClientSettings(bootstrap_servers=sasl_stack.bootstrap))
    try:
        assert admin.list_group_offsets("g-refused").get("g-refused", {}) == {}
    finally:
        admin.close()


def test_sasl_without_credentials_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="kafka_sasl_username"):
        KafkaClientSettings(kafka_security_protocol="SASL_SSL")

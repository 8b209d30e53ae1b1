"""The embedded broker: starts, takes large messages, restarts on the same data, stops."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer

from lrsa.ports import free_ports
from workers.config import MAX_MESSAGE_BYTES
from workers.devstack.kafka_stack import KafkaStack
from repo_paths import REPO

pytestmark = pytest.mark.kafka


def test_large_message_round_trip(kafka_bootstrap: str, kafka_topic) -> None:
    topic = kafka_topic("big")
    payload = b"x" * (15 * 1024 * 1024)  # a 10 MB image as base64 is ~14 MB
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=MAX_MESSAGE_BYTES, acks="all")
    producer.send(topic, payload).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             max_partition_fetch_bytes=MAX_MESSAGE_BYTES, fetch_max_bytes=MAX_MESSAGE_BYTES,
                             consumer_timeout_ms=15000)
    value = next(iter(consumer)).value
    consumer.close()
    assert value == payload


def test_ports_chosen_together_are_distinct() -> None:
    assert len(set(free_ports(64))) == 64


def test_broker_and_controller_never_share_a_port(tmp_path) -> None:
    stack = KafkaStack(tmp_path / "k", port=0)
    assert stack.port != stack.controller_port
    with pytest.raises(ValueError, match="two ports"):
        KafkaStack(tmp_path / "j", port=19092, controller_port=19092)


def test_a_cluster_id_starting_with_a_dash_formats(tmp_path) -> None:
    """One random cluster id in 64 starts with "-"; CI once failed on one ("expected one argument")."""
    import base64
    import uuid

    from workers.devstack.kafka_stack import _server_properties

    cluster_id = next(c for c in (base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
                                  for _ in range(10_000)) if c.startswith("-"))
    stack = KafkaStack(tmp_path / "k", port=0)
    stack.dir.mkdir(parents=True)
    props = stack.dir / "server.properties"
    props.write_text(_server_properties(stack.dir, stack.port, stack.controller_port))
    stack._format(props, cluster_id)
    assert f"cluster.id={cluster_id}" in (stack.dir / "logs" / "meta.properties").read_text()


@pytest.mark.slow
def test_restart_keeps_data(tmp_path) -> None:
    stack = KafkaStack(tmp_path / "k", port=0, heap="256m")
    try:
        stack.up()
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        producer.send("kept", b"hello").get(timeout=30)
        producer.close()
        assert stack.down() and stack.running_pid() is None
        again = KafkaStack(tmp_path / "k")  # ports come back from the data dir
        assert again.bootstrap == stack.bootstrap
        again.up()
        consumer = KafkaConsumer("kept", bootstrap_servers=again.bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=10000)
        assert [m.value for m in consumer] == [b"hello"]
        consumer.close()
    finally:
        stack.down()
    assert not stack.down()  # nothing left running


def test_produce_sends_lines_as_they_are(kafka_bootstrap: str, kafka_topic) -> None:
    from pathlib import Path

    from workers.config import KafkaClientSettings
    from workers.devstack.produce import read_lines, send_lines

    topic = kafka_topic("produce")
    samples = REPO / "samples" / "posts.jsonl"
    lines = list(read_lines(samples))
    assert send_lines(KafkaClientSettings(bootstrap_servers=kafka_bootstrap), topic, lines, progress=False) == 33
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    got = [(m.key, m.value) for _, m in zip(range(33), consumer)]
    consumer.close()
    assert [v for _, v in got] == lines  # malformed lines included, byte for byte, in order
    assert got[0][0] == b"s-001" and (None, lines[10]) in got  # keyed by id when one can be read

"""Every Kafka client takes the LRSA_KAFKA_* security settings (issue 22): for a SASL_SSL setting,
the options each entry point hands its client library, captured in place of the client (no
broker): `lrsa aggregate` (kafka-python admin, Quix Streams' librdkafka ConnectionConfig),
`lrsa dashboard`'s reader, lrsa_cli's read_topic, create_topics and the benches' readers."""

from __future__ import annotations

import kafka
import pytest

PASSWORD = "opt-S3cret"
SECURE = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
          "kafka_sasl_username": "alice", "kafka_sasl_password": PASSWORD, "kafka_ssl_cafile": "/certs/ca.pem"}
KAFKA_PYTHON = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice",
                "sasl_plain_password": PASSWORD, "ssl_cafile": "/certs/ca.pem", "ssl_check_hostname": True}
LIBRDKAFKA = {"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
              "sasl.password": PASSWORD, "ssl.ca.location": "/certs/ca.pem",
              "ssl.endpoint.identification.algorithm": "https"}


class Built(Exception):
    """Raised by the stand-in client once it has its options: nothing connects."""


def recorder(seen: list[dict]):
    def make(*args, **kwargs):
        seen.append(kwargs)
        raise Built
    return make


def assert_kafka_python(options: dict) -> None:
    assert {k: options.get(k) for k in KAFKA_PYTHON} == KAFKA_PYTHON


def test_aggregate_admin_and_quix_application_take_the_security_settings(monkeypatch, tmp_path) -> None:
    import quixstreams

    from workers.aggregate.service import Aggregator, ensure_output_topics
    from workers.aggregate.config import AggregateSettings

    s = AggregateSettings(**SECURE, bootstrap_servers="broker:9093", state_dir=tmp_path, metrics_port=None)
    seen: list[dict] = []
    monkeypatch.setattr(kafka, "KafkaAdminClient", recorder(seen))
    with pytest.raises(Built):
        ensure_output_topics(s)
    assert_kafka_python(seen[-1])
    monkeypatch.setattr(quixstreams, "Application", recorder(seen))
    with pytest.raises(Built):
        Aggregator(s)
    address = seen[-1]["broker_address"]
    assert {k: v for k, v in address.as_librdkafka_dict().items() if k != "bootstrap.servers"} == LIBRDKAFKA
    assert address.as_librdkafka_dict()["bootstrap.servers"] == "broker:9093"
    assert PASSWORD not in repr(address)  # Quix keeps it a SecretStr


def test_aggregate_stays_a_plain_address_without_security(monkeypatch, tmp_path) -> None:
    import quixstreams

    from workers.aggregate.service import Aggregator
    from workers.aggregate.config import AggregateSettings

    seen: list[dict] = []
    monkeypatch.setattr(quixstreams, "Application", recorder(seen))
    with pytest.raises(Built):
        Aggregator(AggregateSettings(bootstrap_servers="broker:9092", state_dir=tmp_path, metrics_port=None))
    assert seen[-1]["broker_address"] == "broker:9092"


def test_dashboard_reader_takes_the_security_settings(monkeypatch) -> None:
    from dashboard import feed
    from dashboard.settings import DashboardSettings

    seen: list[dict] = []
    statuses: list[dict] = []
    reader = feed.KafkaFeed(DashboardSettings(**SECURE), sink=lambda *a: None, status=statuses.append)

    def make(*args, **kwargs):
        seen.append(kwargs)
        reader._stop.set()
        raise Built("stand-in")
    monkeypatch.setattr(feed, "KafkaConsumer", make)
    reader._run()
    assert_kafka_python(seen[-1])
    assert PASSWORD not in str(statuses)


def test_read_topic_create_topics_and_bench_readers_take_the_security_settings(monkeypatch) -> None:
    from lrsa_cli.stack import read_topic
    from workers.bench.scaling import ScalingBenchSettings, output_ids
    from workers.config import KafkaClientSettings
    from workers.devstack.kafka_stack import create_topics

    s = KafkaClientSettings(**SECURE)
    seen: list[dict] = []
    monkeypatch.setattr(kafka, "KafkaConsumer", recorder(seen))
    monkeypatch.setattr(kafka, "KafkaAdminClient", recorder(seen))
    with pytest.raises(Built):
        read_topic("broker:9093", "results", security=s)
    assert_kafka_python(seen[-1])
    with pytest.raises(Built):
        create_topics("broker:9093", ["t"], security=s)
    assert_kafka_python(seen[-1])
    with pytest.raises(Built):
        output_ids(ScalingBenchSettings(**SECURE, embedded=False), "results")
    assert_kafka_python(seen[-1])
    with pytest.raises(Built):
        read_topic("broker:9092", "results")  # no settings: as before, PLAINTEXT
    assert "security_protocol" not in seen[-1]


def test_a_command_with_its_own_env_prefix_reads_the_shared_kafka_security_names(monkeypatch) -> None:
    """`lrsa aggregate` reads LRSA_AGGREGATE_*; the LRSA_KAFKA_* names that secure every other
    client secure it too, its own prefixed names and flags still first."""
    from workers.aggregate.config import AggregateSettings

    monkeypatch.setenv("LRSA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LRSA_KAFKA_SASL_USERNAME", "alice")
    monkeypatch.setenv("LRSA_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("LRSA_KAFKA_SSL_CAFILE", "/certs/ca.pem")
    assert_kafka_python(AggregateSettings().client_options())
    monkeypatch.setenv("LRSA_AGGREGATE_KAFKA_SASL_USERNAME", "bob")
    assert AggregateSettings().kafka_sasl_username == "bob"
    assert AggregateSettings(kafka_sasl_username="carol").kafka_sasl_username == "carol"

"""Configuration errors fail fast and clearly (issue 31 item 3): a wrong Kafka address or a missing
input file is one line naming what was tried and what to do, exit code 2, no traceback, within
--kafka-connect-timeout-s, before Ray or any actor starts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrsa.settings import SettingsError
from workers.kafka_clients.preflight import KafkaUnreachableError, TopicMissingError, check_kafka, wait_reachable
from repo_paths import REPO



def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lrsa(*args: str, timeout_s: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "lrsa_cli.main", *args], capture_output=True, text=True,
                       timeout=timeout_s, cwd=REPO)
    return p.returncode, p.stderr + p.stdout, time.monotonic() - started


@pytest.mark.parametrize("command", [
    ["run"], ["aggregate"], ["produce", "--topic", "posts", "--file", str(REPO / "samples" / "posts.jsonl")],
    ["consume", "results"], ["dashboard", "--http-port", "0"]])
def test_an_address_without_kafka_fails_in_one_line_within_the_timeout(command):
    address = f"127.0.0.1:{closed_port()}"
    rc, out, seconds = lrsa(*command, "--bootstrap-servers", address, "--kafka-connect-timeout-s", "2")
    assert rc == 2, out
    lines = [x for x in out.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in out, out
    assert lines[0].startswith(f"lrsa {command[0]}: no Kafka broker answers at {address}")
    assert "lrsa stack up" in lines[0] and "--bootstrap-servers" in lines[0]
    # the timeout, plus the interpreter's start-up (about 5 s quiet, 21 s seen on a loaded 2-core
    # machine); the failure this guards against, retries through actor replacements, took 130 s
    assert seconds < 2 + 45


def test_produce_with_a_missing_file_says_so_before_connecting(tmp_path):
    rc, out, _ = lrsa("produce", "--topic", "posts", "--file", str(tmp_path / "nope.jsonl"),
                      "--bootstrap-servers", f"127.0.0.1:{closed_port()}")
    assert rc == 2 and out.strip() == f"lrsa produce: no file {tmp_path / 'nope.jsonl'}: pass --file with a JSONL " \
                                      "file of posts (one JSON object per line), e.g. samples/posts.jsonl"


def test_a_broker_that_starts_within_the_deadline_is_waited_for():
    port = closed_port()
    server = socket.socket()

    def listen_later():
        time.sleep(0.8)
        server.bind(("127.0.0.1", port))
        server.listen()

    import threading

    t = threading.Thread(target=listen_later)
    t.start()
    try:
        started = time.monotonic()
        wait_reachable(f"127.0.0.1:{closed_port()},127.0.0.1:{port}", timeout_s=10)
        assert 0.5 < time.monotonic() - started < 5
    finally:
        t.join()
        server.close()
    with pytest.raises(KafkaUnreachableError, match="waited"):
        wait_reachable(f"127.0.0.1:{closed_port()}", timeout_s=0.6)
    with pytest.raises(SettingsError, match="HOST:PORT"):
        wait_reachable("localhost", timeout_s=1)


def test_missing_topics_are_reported_or_refused(kafka_bootstrap, kafka_topic):
    from workers.config import KafkaClientSettings

    s = KafkaClientSettings(bootstrap_servers=kafka_bootstrap, kafka_connect_timeout_s=10)
    present = kafka_topic("present")
    assert check_kafka(s, [present, "absent-topic-x"]) == ["absent-topic-x"]
    with pytest.raises(TopicMissingError, match="absent-topic-x not found on Kafka at .*lrsa stack up --kafka-topics"):
        check_kafka(s, [present, "absent-topic-x"], missing_is_error=True)
    assert check_kafka(s, [present], missing_is_error=True) == []

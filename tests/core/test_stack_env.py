"""`lrsa stack up` writes the address it got; every command reads it as its bootstrap default
(issue 32 item 3): the flag, then LRSA_BOOTSTRAP_SERVERS, then the file, then 127.0.0.1:9092."""
from __future__ import annotations

import argparse

import pytest

from lrsa import stack_env
from lrsa.settings import add_settings_flags, settings_from_args


def _classes():
    from dashboard.settings import DashboardSettings
    from workers.aggregate.config import AggregateSettings
    from workers.config import KafkaClientSettings, WorkerSettings
    from workers.devstack.consume import ConsumeSettings

    return [WorkerSettings, KafkaClientSettings, AggregateSettings, ConsumeSettings, DashboardSettings]


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    path = tmp_path / "stack.env"
    monkeypatch.setenv("LRSA_STACK_ENV", str(path))
    monkeypatch.delenv("LRSA_BOOTSTRAP_SERVERS", raising=False)
    return path


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_every_command_reads_the_stack_address(env_file, cls, monkeypatch):
    assert cls().bootstrap_servers == "127.0.0.1:9092"  # no file: the documented port
    assert stack_env.write("127.0.0.1:39092") == env_file
    assert cls().bootstrap_servers == "127.0.0.1:39092"
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, cls)
    flagged = settings_from_args(cls, parser.parse_args(["--bootstrap-servers", "broker:9093"]))
    assert flagged.bootstrap_servers == "broker:9093"  # the flag wins over the file
    monkeypatch.setenv("LRSA_BOOTSTRAP_SERVERS", "env-broker:9092")
    assert cls().bootstrap_servers == "env-broker:9092"  # and the variable too
    stack_env.remove()
    monkeypatch.delenv("LRSA_BOOTSTRAP_SERVERS")
    assert cls().bootstrap_servers == "127.0.0.1:9092"


def test_the_file_is_a_shell_env_file_and_empty_disables_it(env_file, monkeypatch):
    stack_env.write("127.0.0.1:1,127.0.0.1:2")
    assert "LRSA_BOOTSTRAP_SERVERS=127.0.0.1:1,127.0.0.1:2\n" in env_file.read_text()
    env_file.write_text("# a comment\nexport LRSA_BOOTSTRAP_SERVERS='h:9'\n")
    assert stack_env.default_bootstrap() == "h:9"
    monkeypatch.setenv("LRSA_STACK_ENV", "")
    assert stack_env.stack_env_path() is None and stack_env.default_bootstrap() == "127.0.0.1:9092"
    assert stack_env.write("x:1") is None

"""The control endpoint's options (issue 20), without Ray or Kafka: `--no-control-endpoint` serves
nothing; with a certificate the endpoint speaks HTTPS and `lrsa status`'s client verifies it
against the CA it is given (and refuses an endpoint it cannot verify); bounds set through the
endpoint are kept in --control-bounds-file and applied again by a restarted driver."""

from __future__ import annotations

import argparse
import json

import pytest

from lrsa.settings import add_settings_flags, settings_from_args
from tls_helpers import make_ca_and_server_cert
from workers.config import WorkerSettings
from workers.driver.control import ControlServer, ControlState
from workers.control_cli import ControlError, call
from workers.driver.control_settings import ControlClientSettings
from workers.driver.control_plane import ControlPlane

TOKEN = "t0ken-for-tests"


def worker_settings(*argv: str) -> WorkerSettings:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, WorkerSettings)
    return settings_from_args(WorkerSettings, parser.parse_args(list(argv)))


def test_no_control_endpoint_serves_nothing() -> None:
    s = worker_settings("--no-control-endpoint", "--control-port", "0")
    assert s.control_endpoint is False
    assert worker_settings("--control-port", "0").control_endpoint is True
    plane = ControlPlane(s)
    assert plane.start() and plane.port is None and plane.server is None


def test_the_endpoint_serves_https_and_the_client_verifies_it(tmp_path) -> None:
    tls = make_ca_and_server_cert(tmp_path)
    s = worker_settings("--control-tls-certfile", str(tls.chain), "--control-tls-keyfile", str(tls.key))
    state = ControlState()
    state.publish({"pools": {"rationale": {"min": 1, "max": 2}}}, (True, "consuming"))
    server = ControlServer(state, "127.0.0.1", 0, TOKEN, s.tls_context())
    port = server.start()
    try:
        client = ControlClientSettings(control_url=f"https://127.0.0.1:{port}", control_token=TOKEN,
                                       control_tls_cafile=tls.ca, control_timeout_s=10)
        assert call(client, "GET", "/status")["pools"]["rationale"] == {"min": 1, "max": 2}
        unverified = ControlClientSettings(control_url=f"https://127.0.0.1:{port}", control_token=TOKEN,
                                           control_timeout_s=10)  # the system's CAs do not know this one
        with pytest.raises(ControlError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            call(unverified, "GET", "/status")
        plain = ControlClientSettings(control_url=f"http://127.0.0.1:{port}", control_token=TOKEN,
                                      control_timeout_s=10)
        with pytest.raises(ControlError):  # plain HTTP to a TLS port gets no answer
            call(plain, "GET", "/status")
    finally:
        server.close()
    with pytest.raises(ValueError, match="go together"):
        WorkerSettings(control_tls_certfile=tls.chain)


def unused(*_args):
    raise AssertionError("only resize requests are asked here")


class FakePools:
    """What the control plane's bounds handling uses of workers.driver.pools.Pools."""

    def __init__(self, bounds: dict[str, tuple[int, int]]) -> None:
        self.bounds = dict(bounds)

    def resize(self, stage: str, lo: int | None, hi: int | None):
        if stage not in self.bounds:
            return 404, {"error": f"no stage {stage!r}"}
        self.bounds[stage] = (lo, hi)
        return 200, {"stage": stage}


def test_bounds_set_through_the_endpoint_survive_a_restart(tmp_path) -> None:
    path = tmp_path / "state" / "bounds.json"
    first = ControlPlane(WorkerSettings(control_bounds_file=path))
    pools = FakePools({"rationale": (1, 2), "score": (1, 1)})
    first.state.publish({}, (True, "consuming"))
    future = first.state.ask("resize", stage="rationale", min=2, max=4)
    first.answer(pools, unused, unused)
    assert future.result(timeout=1)[0] == 200
    assert json.loads(path.read_text())["rationale"] == {"min": 2, "max": 4}

    restarted = ControlPlane(WorkerSettings(control_bounds_file=path))
    fresh = FakePools({"rationale": (1, 2), "score": (1, 1)})  # the flags' bounds
    restarted.restore_bounds(fresh)
    assert fresh.bounds == {"rationale": (2, 4), "score": (1, 1)}

    path.write_text("{not json")  # a broken file: reported, the flags apply
    kept = FakePools({"rationale": (1, 2)})
    ControlPlane(WorkerSettings(control_bounds_file=path)).restore_bounds(kept)
    assert kept.bounds == {"rationale": (1, 2)}

    without = ControlPlane(WorkerSettings())  # no file configured: nothing written anywhere
    future = without.state.ask("resize", stage="rationale", min=1, max=3)
    without.answer(FakePools({"rationale": (1, 2)}), unused, unused)
    assert future.result(timeout=1)[0] == 200 and not (tmp_path / "bounds.json").exists()

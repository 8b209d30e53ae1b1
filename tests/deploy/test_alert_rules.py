"""The alert rules are valid, every alert fires (and stays quiet) where its unit tests say
(`promtool test rules deploy/prometheus/lrsa-alerts.test.yml`), and every alert carries a summary,
a description and a runbook that names an existing section of docs/operations.md.

promtool ships with Debian's `prometheus` package (scripts/setup.sh installs it); without it the
promtool tests skip and say so."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml  # PyYAML: a dependency of ray
from repo_paths import REPO

ROOT = REPO
PROM = ROOT / "deploy" / "prometheus"
RULES, RULE_TESTS, CONFIG = PROM / "lrsa-alerts.yml", PROM / "lrsa-alerts.test.yml", PROM / "prometheus.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: install Debian's `prometheus` package (scripts/setup.sh does)")


def alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=PROM, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_promtool_check_rules() -> None:
    run = promtool("check", "rules", RULES.name)
    assert run.returncode == 0, run.stdout + run.stderr


@needs_promtool
def test_promtool_check_example_config() -> None:
    run = promtool("check", "config", CONFIG.name)
    assert run.returncode == 0, run.stdout + run.stderr


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    run = promtool("test", "rules", RULE_TESTS.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, flags=re.M)}


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_is_annotated_with_a_runbook(rule: dict) -> None:
    ann = rule.get("annotations", {})
    assert ann.get("summary") and ann.get("description"), rule["alert"]
    doc, _, anchor = ann.get("runbook", "").partition("#")
    assert doc == "docs/operations.md" and anchor in heading_anchors(OPERATIONS.read_text()), ann.get("runbook")
    assert rule.get("labels", {}).get("severity") in {"warning", "critical"}


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {r["alert"] for r in alerts()}
    assert names - fires == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"

"""The README stays true: its first code block holds the two commands, CI runs the second, and the
configuration reference (docs/configuration.md) matches the settings classes."""

from __future__ import annotations

import re
from pathlib import Path

from lrsa_cli.reference import BEGIN, END, render
from repo_paths import REPO

ROOT = REPO
README = (ROOT / "README.md").read_text()


def first_code_block() -> list[str]:
    block = re.search(r"^```[^\n]*\n(.*?)^```", README, re.S | re.M)
    assert block, "README has no fenced code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_first_block_is_demo_then_tests() -> None:
    demo, tests = first_code_block()
    assert (ROOT / demo.split()[0]).exists() and (ROOT / tests.split()[0]).exists()
    assert "demo" in demo and "test" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    script = first_code_block()[1].split()[0].removeprefix("./")
    assert f"bash {script}" in ci


CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def test_configuration_reference_is_current() -> None:
    assert render() in CONFIGURATION, "docs/configuration.md is stale: paste `lrsa config-reference`"
    assert CONFIGURATION.count(BEGIN) == CONFIGURATION.count(END) == 1, \
        "paste the reference over the old one, markers included"


def test_readme_is_an_entry_page() -> None:
    """The README is what a newcomer reads first: at most 250 lines, linking the configuration
    reference and the measured figures instead of holding them."""
    assert len(README.splitlines()) <= 250
    assert BEGIN not in README and "docs/configuration.md" in README and "docs/results.md" in README
    for link in re.findall(r"\]\(((?:docs|models)/[^)#]+)", README):
        assert (ROOT / link).exists(), link

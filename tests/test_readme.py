"""The README stays true: its first code block holds the two commands, CI runs the second, and the
configuration reference matches the settings classes."""

from __future__ import annotations

import re
from pathlib import Path

from lrsa_cli.reference import BEGIN, END, render

ROOT = Path(__file__).resolve().parent.parent
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


def test_configuration_reference_is_current() -> None:
    assert render() in README, "README configuration reference is stale: paste `lrsa config-reference`"
    assert README.count(BEGIN) == README.count(END) == 1, "paste the reference over the old one, markers included"

"""The set-up is split by purpose (issue 27): the main job's set-up (scripts/setup.sh) installs
only what the pipeline needs; the test-only tools (chromium, chromium-driver, prometheus) come
with `scripts/setup.sh --test`, which the README's test command runs.

Run on a PATH that has the tools the set-up needs but not chromium or promtool, with an apt-get
that records what it is asked to install (and installs nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from repo_paths import REPO

TOOLS = ["bash", "cat", "sha256sum", "cut", "ls", "mkdir", "tail", "sed", "rm", "java", "mvn", "python3",
         "env", "dirname"]


@pytest.fixture()
def bare_path(tmp_path: Path) -> tuple[Path, Path]:
    if not (REPO / ".venv" / ".lrsa-installed").exists():
        pytest.skip("run scripts/setup.sh first (this test checks what a set-up re-run would install)")
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-calls"
    bin_dir.mkdir()
    for tool in TOOLS:
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    (bin_dir / "apt-get").write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    (bin_dir / "apt-get").chmod(0o755)
    return bin_dir, calls


def run_setup(bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": str(bin_dir)}
    return subprocess.run(["bash", "scripts/setup.sh", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def installed(calls: Path) -> list[str]:
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [w for line in lines if line.split()[:1] != ["update"] for w in line.split() if not w.startswith("-")
            and w != "install"]


def test_main_setup_installs_no_test_tool(bare_path) -> None:
    bin_dir, calls = bare_path
    done = run_setup(bin_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not {"chromium", "chromium-driver", "prometheus"} & set(installed(calls)), installed(calls)
    assert "[setup] ready" in done.stdout


def test_test_setup_installs_the_test_tools(bare_path) -> None:
    bin_dir, calls = bare_path
    done = run_setup(bin_dir, "--test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {"chromium", "chromium-driver", "prometheus"} <= set(installed(calls))
    # one line per step: apt's own output went to the log file, not to the user
    assert "Unpacking" not in done.stdout and "apt (tests only)" in done.stdout


def test_readme_test_command_runs_the_test_setup() -> None:
    assert "bash scripts/setup.sh --test" in (REPO / "scripts" / "test.sh").read_text()
    assert "--test" not in (REPO / "scripts" / "demo.sh").read_text()

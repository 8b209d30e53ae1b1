"""Shared pytest set-up. Fixtures live in plugin modules owned by each area.

The tests mirror the code's rooms, one folder each: core (lrsa/), rationale (lrsa/rationale/),
training (training/), serving (serving/), ingest (workers/ingest/, workers/kafka_clients/),
stages (workers/stages/), driver (workers/driver/), aggregate (workers/aggregate/), devstack
(workers/devstack/), bench (workers/bench/), dashboard (dashboard/), deploy (deploy/), and
project (the whole: CLI flags, README and reference, layering, import cycles, end to end).
Fixtures, doubles and helpers shared across rooms stay here, in this folder, which is on
`sys.path` for every room (repo_paths.py says where the checkout is)."""

from __future__ import annotations

import os
import sys

import pytest

# `lrsa run` scores by default (the score stage on, Triton at --scorer-url). The suite's plumbing
# tests (Kafka, Ray, offsets, faults) run the worker as pass-through unless they turn a stage on:
# they state it once here, for this process and every `lrsa run` it starts. The tests of the
# default itself clear it (test_cli_flags, test_run_serve).
os.environ.setdefault("LRSA_SCORE_ENABLED", "false")
# A developer's `lrsa stack up` writes its address to .cache/stack.env, which every command reads
# (lrsa/stack_env.py): the suite ignores it; tests of the file name their own.
os.environ["LRSA_STACK_ENV"] = ""

pytest_plugins = [
    "fixtures_data",
    "fixtures_kafka",
    "fixtures_triton",
]


# ---- tiers ---------------------------------------------------------------------------------------
# The fast tier for the inner loop, `pytest -m "not slow"` (README, "Tests"): what needs no broker,
# tritonserver, Ray or data set. A test is slow when it is marked so, carries one of those marks,
# or takes one of those fixtures; .ci/run runs every tier.
NEEDS_A_SERVICE = {"kafka", "triton", "ray", "data"}
SERVICE_FIXTURES = {"kafka_stack", "kafka_bootstrap", "kafka_topic", "triton_server", "start_triton", "data_dir"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        if "slow" not in marks and (marks & NEEDS_A_SERVICE or SERVICE_FIXTURES & set(item.fixturenames)):
            item.add_marker(pytest.mark.slow)


# ---- exit ----------------------------------------------------------------------------------------
# Ray started in this process (test_rebalance, test_rationale_stage) can crash the interpreter's
# final clean-up after ray.shutdown() (SIGSEGV, exit 139, seen once in a full run here after
# "145 passed"), turning a green run red. Once pytest has reported and written everything, leave
# with the session's own exit status and skip that clean-up.
_exit_status: int | None = None


def pytest_sessionfinish(session, exitstatus) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    if _exit_status is not None and "ray" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)

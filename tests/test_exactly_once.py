"""Exactly-once mode: kill -9 mid-run, restart; a read_committed consumer sees every post once."""

from __future__ import annotations

import signal

import pytest

from test_crash_recovery import duplicates, run_interrupted

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def test_kill_9_in_exactly_once_mode_has_no_duplicates(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    data, results, letters, committed = run_interrupted(kafka_bootstrap, kafka_topic, tmp_path, "eos",
                                                        signal.SIGKILL, "--exactly-once", read_committed=True)
    print(f"\nexactly-once: kill -9 at {sum(committed.values())} committed; "
          f"{len(results)} results, {len(letters)} dead letters read_committed")
    assert duplicates(results) == [] and duplicates(letters) == []
    assert len(results) == len(data.good_ids) and len(letters) == len(data.bad_keys)

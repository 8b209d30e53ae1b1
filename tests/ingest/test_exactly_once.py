"""Exactly-once mode: kill -9 mid-run, restart; a read_committed consumer sees every post once."""

from __future__ import annotations

import signal

import pytest

from streaming_helpers import read_all
from test_crash_recovery import duplicates, run_interrupted

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def test_kill_9_in_exactly_once_mode_has_no_duplicates(kafka_bootstrap, kafka_topic, tmp_path) -> None:
    data, results, letters, committed = run_interrupted(kafka_bootstrap, kafka_topic, tmp_path, "eos",
                                                        signal.SIGKILL, "--exactly-once", read_committed=True)
    raw = read_all(kafka_bootstrap, results[0].topic)  # read_uncommitted: aborted writes show up here
    print(f"\nexactly-once: kill -9 at {sum(committed.values())} committed; read_committed sees "
          f"{len(results)} results + {len(letters)} dead letters; read_uncommitted sees {len(raw)} results "
          f"({len(duplicates(raw))} duplicates from the aborted transaction)")
    assert duplicates(results) == [] and duplicates(letters) == []
    assert len(results) == len(data.good_ids) and len(letters) == len(data.bad_keys)

"""Two `lrsa run` drivers in one consumer group (issue 22), in both delivery modes: neither is
fenced (each member has its own stable transactional ids), and every post ends as exactly one
result or dead letter (exactly-once: read_committed, zero duplicates)."""

from __future__ import annotations

import re

import pytest

from streaming_helpers import (ECHO_STAGE, make_dataset, produce, read_outcome, start_worker, wait_exit, wait_for)
from workers.ingest.member_id import MemberId, transactional_id

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def test_member_ids_differ_per_live_driver_and_come_back_after_a_restart(tmp_path) -> None:
    a, b = MemberId("g", folder=tmp_path), MemberId("g", folder=tmp_path)
    assert a.instance != b.instance
    assert MemberId("other", folder=tmp_path).instance == a.instance  # slots are per group
    first = a.instance
    a.release()  # the driver ended (a crash drops the lock the same way)
    again = MemberId("g", folder=tmp_path)
    assert again.instance == first  # the restarted driver takes its predecessor's ids
    assert MemberId("g", "pod-3").instance == "pod-3"
    assert transactional_id("g", "pod-3", 1) == "g-pod-3-ingest-1"


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_two_drivers_in_one_group(kafka_bootstrap, kafka_topic, tmp_path, mode) -> None:
    eos = mode == "exactly-once"
    data = make_dataset(2_000, 40, seed=22)
    name = f"two-{mode}"
    topics = {"in": kafka_topic(f"{name}-in", 4), "out": kafka_topic(f"{name}-out", 4),
              "dlq": kafka_topic(f"{name}-dlq", 1)}
    extra = ["--rationale-enabled", "--rationale-processor", ECHO_STAGE, "--batch-size", "50",
             "--commit-interval-ms", "300", "--ray-num-cpus", "2", "--exit-when-idle", "25",
             *(["--exactly-once"] if eos else [])]
    env = {"LRSA_TEST_STAGE_DELAY_S": "0.002"}  # ~4 s of stage work, split over the two members
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(kafka_bootstrap, topics, name, *extra, log=log, env=env) for log in logs]
    # the posts once the group has both members, each owning two of the four partitions (the idle
    # exit is long enough for the slower driver to join before the first gives up on an empty input)
    two = re.compile(r"ingest 0 assigned \[\('[^']*', \d\), \('[^']*', \d\)\]")
    wait_for(lambda: all(two.search(log.read_text(errors="replace")) for log in logs), 120, 0.5,
             what="both drivers in the group with two partitions each")
    produce(kafka_bootstrap, topics["in"], data.values)
    codes = [wait_exit(w, 240, log) for w, log in zip(workers, logs)]
    texts = [log.read_text(errors="replace") for log in logs]
    assert codes == [0, 0], texts[0][-3000:] + texts[1][-3000:]
    for text in texts:
        assert "Fenced" not in text and "fenced" not in text
    # the driver's own line: the actor's "stopped after" can be cut off by the driver's shutdown
    consumed = [sum(int(n) for n in re.findall(r"workers.driver.ingest_fleet: ingest \d+ finished after (\d+) posts", t))
                for t in texts]
    assert all(n > 0 for n in consumed), f"one driver consumed nothing: {consumed}"
    if eos:
        ids = [re.search(r"transactional ids (\S+)", t).group(1) for t in texts]
        assert ids[0] != ids[1]
    results, letters, dups = read_outcome(kafka_bootstrap, topics, data, read_committed=eos)
    print(f"\n{mode}: posts consumed per driver {consumed}, duplicates {dups}")
    if eos:
        assert dups == 0
    else:  # at-least-once: only a rebalance between the two members can redo posts
        assert dups <= len(data.values) // 4

"""`lrsa bench pipeline`'s like-for-like loop: it writes records of the size it measured on the
pipeline's output topic, so its ratio compares equal bytes (issue 30 item 7)."""

from __future__ import annotations

import pytest

from streaming_helpers import produce, read_all

pytestmark = [pytest.mark.kafka]


def test_the_bare_loop_writes_records_of_the_measured_result_size(kafka_bootstrap, kafka_topic) -> None:
    from workers.bench.pipeline import BenchSettings, bare_loop, mean_record_bytes

    s = BenchSettings(bootstrap_servers=kafka_bootstrap, commit_interval_ms=200)
    results, posts, out = kafka_topic("pb-results"), kafka_topic("pb-in"), kafka_topic("pb-out")
    produce(kafka_bootstrap, results, [(f"r{i}".encode(), b"x" * (100 + 100 * (i % 3))) for i in range(30)])
    size = mean_record_bytes(s, results)
    assert size == 200  # sizes 100, 200, 300 in equal shares
    produce(kafka_bootstrap, posts, [(f"p{i}".encode(), b"y" * (50 if i % 2 else 500)) for i in range(20)])
    assert bare_loop(s, posts, out, 20, out_bytes=size) > 0
    written = read_all(kafka_bootstrap, out)
    assert len(written) == 20 and {len(r.value) for r in written} == {size}  # short ones padded, long ones cut

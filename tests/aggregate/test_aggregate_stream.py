"""`lrsa aggregate` on the real broker: a planted shift fires (and resolves) an alert, aggregates
equal counts straight from the input, out-of-order and late mentions, SIGKILL + restart.

Event times are historical (2026-01-01) and windows seconds long, so nothing waits for the clock.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from aggregate_helpers import (BASE_MS, expected_windows, last_per_key, produce, read_topic, result,
                               shift_sequence)
from lrsa.aggregates import AggregateRecord, iso_ms
from lrsa.shift import AlertEvent
from streaming_helpers import committed_offsets, kill_tree, wait_for
from workers.aggregate.service import AggregateMetrics, run_aggregate
from workers.aggregate.config import AggregateSettings
from repo_paths import REPO

pytestmark = pytest.mark.kafka


def settings(bootstrap: str, inp: str, tmp: Path, name: str, **kw) -> AggregateSettings:
    return AggregateSettings(bootstrap_servers=bootstrap, input_topic=inp, aggregates_topic=f"{inp}.agg-{name}",
                             alerts_topic=f"{inp}.alerts-{name}", group_id=f"{inp}-{name}",
                             state_dir=tmp / f"state-{name}", metrics_port=0, exit_when_idle_s=3,
                             commit_interval_s=0.5, **kw)


def counts_of(aggs: dict[str, dict], label: str) -> dict[str, dict]:
    return {k: v["counts"] for k, v in aggs.items() if f"|{label}|" in k}


def test_planted_shift_alerts_and_exact_aggregates(kafka_bootstrap, kafka_topic, tmp_path):
    w_ms, shift_at, shift_end = 10_000, 6, 9
    seq = shift_sequence(w_ms, 12, 30, "Acme", shift_at, ["Beta", "Gamma", "Delta Air Lines"],
                         shift_end=shift_end)
    # later mentions of every entity advance its event time past the last window: all windows close
    seq += [result(f"late-closer-{i}", BASE_MS + 20 * w_ms + i, [(e, "neutral")])
            for i, e in enumerate(["Acme", "Beta", "Gamma", "Delta Air Lines"])]
    inp = kafka_topic("agg-in", partitions=1)
    produce(kafka_bootstrap, inp, seq, raw=[b"not json", b"[1, 2]", b'{"post_id": "x", "aspects": 5}'])
    s = settings(kafka_bootstrap, inp, tmp_path, "shift", windows="10s,1m", allowed_lateness_s=2,
                 alert_min_mentions=20, alert_min_baseline_mentions=40)
    metrics = AggregateMetrics()
    run_aggregate(s, metrics)

    assert _cleanup_policy(kafka_bootstrap, s.aggregates_topic) == "compact"
    records = read_topic(kafka_bootstrap, s.aggregates_topic)
    aggs = last_per_key(records)
    for v in aggs.values():
        AggregateRecord.model_validate(v)
    assert counts_of(aggs, "10s") == expected_windows(seq, "10s", w_ms)
    assert counts_of(aggs, "1m") == expected_windows(seq, "1m", 60_000)
    k = f"Acme|10s|{iso_ms(BASE_MS)}"
    assert aggs[k]["window_end"] == iso_ms(BASE_MS + w_ms) and aggs[k]["mentions"] == 30
    c = aggs[k]["counts"]
    assert aggs[k]["net_sentiment"] == pytest.approx((c["positive"] - c["negative"]) / 30, abs=1e-6)
    assert metrics.results._value.get() == len(seq) + 1  # + the object whose aspects are not a list
    assert metrics.invalid._value.get() == 2
    assert metrics.late.labels(window="10s")._value.get() == 0

    alerts = [v for _, v in read_topic(kafka_bootstrap, s.alerts_topic)]
    for a in alerts:
        AlertEvent.model_validate(a)
    assert {a["entity"] for a in alerts} == {"Acme"}, alerts  # none for the stable entities
    fired = [a for a in alerts if a["type"] == "fired"]
    assert len(fired) == 1 and fired[0]["direction"] == "negative"
    fired_w = (BASE_MS_of(fired[0]["window_start"]) - BASE_MS) // w_ms
    assert shift_at <= fired_w <= shift_at + 2, fired[0]
    # the evidence: Acme's negative posts of that window, with their rationales
    in_window = {r["post_id"]: r["rationale"] for r in seq
                 if r["aspects"][0]["entity"] == "Acme" and r["aspects"][0]["sentiment"] == "negative"
                 and r["event_time"][:18] == fired[0]["window_start"][:18]}
    assert fired[0]["post_ids"] and set(fired[0]["post_ids"]) <= set(in_window)
    assert fired[0]["rationales"] == [in_window[p] for p in fired[0]["post_ids"]]
    resolved = [a for a in alerts if a["type"] == "resolved"]
    assert len(resolved) == 1 and resolved[0]["episode_id"] == fired[0]["episode_id"]
    assert shift_end <= (BASE_MS_of(resolved[0]["window_start"]) - BASE_MS) // w_ms <= shift_end + 2
    assert metrics.alerts.labels(type="fired", direction="negative")._value.get() == 1


def BASE_MS_of(iso: str) -> int:
    from lrsa.aggregates import parse_time_ms

    return parse_time_ms(iso)


def test_out_of_order_and_late_mentions(kafka_bootstrap, kafka_topic, tmp_path):
    # 10 s windows, 5 s allowed lateness; seconds after BASE_MS, in the order they arrive
    arrivals = [(1, "w0"), (2, "w0"), (12, "w1"), (8, "w0 out of order, within lateness"),
                (25, "w2: the entity's time passes 20, windows 0 and 1 close"),
                (3, "late: window 0 closed"), (15, "late: window 1 closed"), (21, "w2 out of order")]
    seq = [result(f"p{i}", BASE_MS + sec * 1000, [("Acme", "negative" if i % 2 else "positive")])
           for i, (sec, _) in enumerate(arrivals)]
    inp = kafka_topic("agg-late", partitions=1)
    produce(kafka_bootstrap, inp, seq)
    s = settings(kafka_bootstrap, inp, tmp_path, "late", windows="10s", allowed_lateness_s=5)
    metrics = AggregateMetrics()
    run_aggregate(s, metrics)
    aggs = last_per_key(read_topic(kafka_bootstrap, s.aggregates_topic))
    got = {k.split("|")[2]: v["mentions"] for k, v in aggs.items()}
    assert got == {iso_ms(BASE_MS): 3, iso_ms(BASE_MS + 10_000): 1, iso_ms(BASE_MS + 20_000): 2}
    assert sorted(aggs[f"Acme|10s|{iso_ms(BASE_MS)}"]["example_post_ids"]) == ["p0", "p1", "p3"]
    late = metrics.late.labels(window="10s")._value.get()
    assert late == 2
    assert sum(got.values()) + late == len(seq)  # every mention aggregated or counted late


def _cleanup_policy(bootstrap: str, topic: str) -> str:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    return res["topic"][topic]["cleanup.policy"]["value"]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def _start(s: AggregateSettings, log: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lrsa_cli.main", "aggregate", "--bootstrap-servers", s.bootstrap_servers,
           "--input-topic", s.input_topic, "--aggregates-topic", s.aggregates_topic,
           "--alerts-topic", s.alerts_topic, "--group-id", s.group_id, "--state-dir", str(s.state_dir),
           "--windows", s.windows, "--allowed-lateness-s", str(s.allowed_lateness_s),
           "--commit-interval-s", str(s.commit_interval_s), "--metrics-port", "0", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.mark.slow
def test_sigkill_and_restart_equals_an_uninterrupted_run(kafka_bootstrap, kafka_topic, tmp_path):
    # 2 input partitions (so the entity re-keying goes through a repartition topic); a lateness
    # longer than the whole stream, so the partitions' interleaving can never make a mention late
    import random

    rng = random.Random(11)
    entities = ["Acme", "Beta", "Gamma", "Delta Air Lines", "Epsilon"]
    seq = [result(f"k{i}", BASE_MS + i * 10, [(rng.choice(entities), rng.choice(["positive", "neutral", "negative"]))
                                               for _ in range(rng.randint(1, 2))]) for i in range(4000)]
    inp = kafka_topic("agg-kill", partitions=2)
    ref = settings(kafka_bootstrap, inp, tmp_path, "ref", windows="5s", allowed_lateness_s=86400)
    killed = settings(kafka_bootstrap, inp, tmp_path, "kill", windows="5s", allowed_lateness_s=86400)

    # the killed run reads while the results are still being produced
    log1 = tmp_path / "kill1.log"
    proc = _start(killed, log1)
    wait_for(lambda: "application started" in log1.read_text(), 90, what="the aggregator to start")
    producer = threading.Thread(target=lambda: [produce(kafka_bootstrap, inp, seq[i:i + 200])
                                                or time.sleep(0.25) for i in range(0, len(seq), 200)])
    producer.start()
    try:
        wait_for(lambda: sum(committed_offsets(kafka_bootstrap, killed.group_id, inp).values()) > 0,
                 90, what="the aggregator's first checkpoint")
        port = int(re.search(r"metrics on http://127.0.0.1:(\d+)/", log1.read_text()).group(1))
        scraped = re.search(r"^lrsa_aggregate_results_total (\S+)$", _scrape(port), re.M)
        kill_tree(proc.pid)  # SIGKILL, mid-stream
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
        producer.join(timeout=60)
    done_at_kill = sum(committed_offsets(kafka_bootstrap, killed.group_id, inp).values())
    assert 0 < done_at_kill < len(seq), done_at_kill  # killed mid-stream
    assert scraped and float(scraped.group(1)) > 0  # the Prometheus endpoint counts consumed results

    proc = _start(killed, tmp_path / "kill2.log", "--exit-when-idle-s", "4")
    run_aggregate(ref)  # the uninterrupted reference, meanwhile
    assert proc.wait(timeout=180) == 0, (tmp_path / "kill2.log").read_text()[-3000:]

    after_kill = last_per_key(read_topic(kafka_bootstrap, killed.aggregates_topic))
    uninterrupted = last_per_key(read_topic(kafka_bootstrap, ref.aggregates_topic))
    strip = lambda d: {k: {f: v[f] for f in ("counts", "mentions", "mean_confidence", "net_sentiment")}
                       for k, v in d.items()}
    assert strip(after_kill) == strip(uninterrupted)
    assert counts_of(after_kill, "5s") == expected_windows(seq, "5s", 5000)

"""The soak run (issue 31 item 5; not in CI): the full pipeline for a long while under faults.

    .venv/bin/python scripts/soak.py --duration-s 1800 --rate 2 [--out runs/soak/soak.json]

What it runs, all on loopback:
- a 3-broker KRaft cluster (workers/devstack/kafka_cluster.py; topics replicated 3 times);
- a real tritonserver serving the shipped default model (models/lrsa-default);
- worker A: `lrsa run` with the score stage, the SmolLM2 rationale stage and the rationale gate
  (`--rationale-gate`), at-least-once, for the whole run;
- a steady feed of `rate` posts/s for `duration_s` (the brand sample's texts, each post a fresh
  id; every 200th an invalid record, which must reach the dead-letter topic).

Faults, at fixed shares of the run: tritonserver crashed (SIGKILL) and restarted twice, one broker
of three crashed and restarted once, a second worker (B, same group) added and later removed
(SIGTERM: a graceful leave).

Printed at the end (and written as JSON to --out): posts sent, results, dead letters, lost (sent,
neither a result nor a dead letter), duplicates (results beyond a post's first); per fault the
group lag's peak and its recovery time (fault done -> lag back within the pre-fault level after
that peak); the
RSS slope of every process that lived through the run's second half (MB/hour, least squares over
the samples after the warm-up share), and the largest RSS.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lrsa.settings import add_settings_flags, settings_from_args  # noqa: E402

log = logging.getLogger("soak")


class SoakSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LRSA_SOAK_")

    duration_s: float = Field(1800.0, gt=0, description="how long the feed runs (the faults are placed in it)")
    rate: float = Field(2.0, gt=0, description="posts written to the input a second")
    partitions: int = Field(4, ge=1, description="partitions of the input topic")
    rationale_gate: float = Field(0.5, ge=0, le=1, description="--rationale-gate of the workers")
    batch_size: int = Field(16, ge=1, description="--batch-size of the workers")
    checkpoint: Path = Field(REPO / "models" / "lrsa-default", description="the fused SLM tritonserver serves")
    posts: Path = Field(REPO / "samples" / "brand_stream.jsonl", description="texts of the feed (cycled)")
    work_dir: Path = Field(REPO / "runs" / "soak" / "work", description="brokers' data, logs")
    out: Path = Field(REPO / "runs" / "soak" / "soak.json", description="the figures as JSON")
    sample_every_s: float = Field(2.0, gt=0, description="lag and RSS sampling period")
    warmup_share: float = Field(0.1, ge=0, lt=1, description="share of the run left out of the RSS slopes")
    startup_timeout_s: float = Field(600.0, gt=0, description="how long worker A may take to start")
    drain_timeout_s: float = Field(900.0, gt=0, description="after the feed: how long the lag may take to reach 0")


# (share of the run, fault)
SCHEDULE = [(0.15, "triton-restart"), (0.35, "broker-restart"), (0.55, "worker-add"), (0.70, "worker-remove"),
            (0.85, "triton-restart")]


def worker(s: SoakSettings, bootstrap: str, topics: dict[str, str], scorer_env: dict[str, str], name: str,
           logs: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lrsa_cli.main", "run", "--bootstrap-servers", bootstrap,
           "--input-topic", topics["in"], "--output-topic", topics["out"], "--dlq-topic", topics["dlq"],
           "--group-id", "soak", "--score-enabled", "--rationale-enabled", "--rationale-gate", str(s.rationale_gate),
           "--batch-size", str(s.batch_size), "--metrics-port", "0", "--control-port", "0"]
    return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **scorer_env}, stdout=subprocess.DEVNULL,
                            stderr=open(logs / f"worker-{name}.log", "w"), start_new_session=True)


class Feeder(threading.Thread):
    """`rate` posts/s for `duration_s`; every 200th record is invalid JSON (a dead letter)."""

    def __init__(self, s: SoakSettings, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.s, self.bootstrap, self.topic = s, bootstrap, topic
        self.texts = [json.loads(line) for line in s.posts.read_text().splitlines() if line.strip()]
        self.sent: list[str] = []
        self.bad: list[str] = []
        self.errors = 0

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all", linger_ms=20, retries=50)
        total = int(self.s.rate * self.s.duration_s)
        start, i = time.monotonic(), 0
        while i < total:
            due = min(total, int((time.monotonic() - start) * self.s.rate) + 1)
            for j in range(i, due):
                key = f"soak-{j}"
                if j % 200 == 199:
                    value, kind = b'{"id": "' + key.encode() + b'", "text": ', self.bad
                else:
                    post = dict(self.texts[j % len(self.texts)])
                    post.pop("aspects", None)
                    post["id"] = key
                    value, kind = json.dumps(post).encode(), self.sent
                try:
                    producer.send(self.topic, key=key.encode(), value=value).get(timeout=120)
                    kind.append(key)
                except Exception as e:  # counted: a post never written is not the pipeline's loss
                    self.errors += 1
                    log.warning("feed: %s not written: %s", key, e)
            i = due
            time.sleep(0.05)
        producer.close()


def process_table(roots: dict[str, int | None]) -> dict[str, int]:
    """'role/name/pid' -> RSS bytes, for each root process and its descendants."""
    import psutil

    out = {}
    for role, pid in roots.items():
        if not pid:
            continue
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                title = " ".join(p.cmdline()[:1]) or p.name()
                name = title.split("/")[-1][:40] if not title.startswith("ray::") else title[:40]
                out[f"{role}/{name}/{p.pid}"] = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
    return out


def slope_mb_per_h(points: list[tuple[float, int]]) -> float:
    ts = [t for t, _ in points]
    mean_t, mean_r = statistics.fmean(ts), statistics.fmean(r for _, r in points)
    var = sum((t - mean_t) ** 2 for t in ts)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
    return cov / var / 2**20 * 3600 if var else 0.0


def recovery(samples: list[tuple[float, int | None]], fault_at: float, done_at: float, rate: float,
             next_at: float) -> dict[str, Any]:
    """Lag before the fault (median over its 60 s), the peak after (until the next fault), and the
    seconds from the fault's end until the lag is back within max(1.5 x that, 3 s of feed) after
    that peak (a worker's start-up can raise the lag a minute after the fault itself)."""
    before = [lag for t, lag in samples if fault_at - 60 <= t < fault_at and lag is not None]
    base = statistics.median(before) if before else 0
    bound = max(1.5 * base, 3 * rate)
    after = [(t, lag) for t, lag in samples if done_at <= t < next_at and lag is not None]
    peak_at, peak = max(after, key=lambda p: p[1], default=(done_at, None))
    if peak is not None and peak <= bound:  # the lag never left its level
        return {"lag_before": base, "lag_peak_after": peak, "bound": round(bound, 1), "recovery_s": 0.0}
    back = next((t for t, lag in after if t >= peak_at and lag <= bound), None)
    return {"lag_before": base, "lag_peak_after": peak, "bound": round(bound, 1),
            "recovery_s": round(back - done_at, 1) if back is not None else None}


def wait_up(proc: subprocess.Popen, log_file: Path, timeout_s: float) -> None:
    """Until the worker logs "pipeline up" (its actors started, the input being read)."""
    deadline = time.monotonic() + timeout_s
    while "pipeline up" not in log_file.read_text(errors="replace"):
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode} before it was up; see {log_file}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker not up after {timeout_s:.0f}s; see {log_file}")
        time.sleep(1)


def stop(proc: subprocess.Popen | None, timeout_s: float = 90) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def run(s: SoakSettings) -> dict[str, Any]:
    import base64

    from lrsa.model_pack import resolve_checkpoint
    from lrsa_cli.stack import read_topic
    from serving.triton_server import TritonServer, render_repository
    from workers.config import KafkaClientSettings
    from workers.devstack.kafka_cluster import KafkaCluster
    from workers.devstack.kafka_stack import create_topics
    from workers.kafka_clients.clients import GroupLag

    s.work_dir.mkdir(parents=True, exist_ok=True)
    logs = s.work_dir / "logs"
    logs.mkdir(exist_ok=True)
    checkpoint = resolve_checkpoint(s.checkpoint)
    cluster = KafkaCluster(s.work_dir / f"kafka-{os.getpid()}", brokers=3, heap="384m")
    triton = TritonServer(render_repository(s.work_dir / "repo", checkpoint), http_port=0, grpc_port=0,
                          metrics_port=0, workdir=s.work_dir / "triton")
    workers: dict[str, subprocess.Popen | None] = {"A": None, "B": None}
    faults: list[dict[str, Any]] = []
    lag_samples: list[tuple[float, int | None]] = []
    rss: dict[str, list[tuple[float, int]]] = {}
    sampling = threading.Event()
    try:
        bootstrap = cluster.up()
        triton.start(timeout_s=600)
        scorer_env = {"LRSA_SCORER_URL": triton.grpc_url, "LRSA_SCORER_CHECKPOINT": str(checkpoint)}
        tag = os.urandom(3).hex()
        topics = {k: f"soak-{k}-{tag}" for k in ("in", "out", "dlq")}
        create_topics(bootstrap, [topics["in"]], s.partitions, cluster.replication)
        create_topics(bootstrap, [topics["out"], topics["dlq"]], 1, cluster.replication)
        workers["A"] = worker(s, bootstrap, topics, scorer_env, "A", logs)
        wait_up(workers["A"], logs / "worker-A.log", s.startup_timeout_s)  # the run's clock starts with the worker
        probe = GroupLag(KafkaClientSettings(bootstrap_servers=bootstrap), topics["in"], "soak")

        def sample() -> None:
            while not sampling.is_set():
                now = time.monotonic()
                try:
                    lag_samples.append((now, sum(probe.lag().values())))
                except Exception:
                    lag_samples.append((now, None))
                roots = {"worker-A": workers["A"] and workers["A"].pid, "worker-B": workers["B"] and workers["B"].pid,
                         "triton": triton.pid, **{f"broker-{n.node_id}": n.running_pid() for n in cluster.nodes}}
                for key, value in process_table(roots).items():
                    rss.setdefault(key, []).append((now, value))
                sampling.wait(s.sample_every_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        feeder = Feeder(s, bootstrap, topics["in"])
        begin = time.monotonic()
        feeder.start()
        print(f"[soak] feeding {s.rate} posts/s for {s.duration_s:.0f} s; faults at "
              + ", ".join(f"{share * s.duration_s:.0f} s {name}" for share, name in SCHEDULE), flush=True)
        for share, name in SCHEDULE:
            time.sleep(max(0.0, begin + share * s.duration_s - time.monotonic()))
            at, extra = time.monotonic(), {}
            if name == "triton-restart":
                triton.kill()
                time.sleep(10)
                triton.start(timeout_s=600)
            elif name == "broker-restart":
                cluster.kill(2)
                time.sleep(20)
                cluster.restart(2)
            elif name == "worker-add":
                workers["B"] = worker(s, bootstrap, topics, scorer_env, "B", logs)
            elif name == "worker-remove":
                extra["worker_B_exit"] = stop(workers["B"])
            faults.append({"fault": name, "at_s": round(at - begin), "took_s": round(time.monotonic() - at, 1),
                           **extra, "_at": at, "_done": time.monotonic()})
            print(f"[soak] {at - begin:6.0f} s: {name} done in {faults[-1]['took_s']} s", flush=True)
        feeder.join()
        fed_at = time.monotonic()
        print(f"[soak] feed done ({len(feeder.sent)} posts, {len(feeder.bad)} invalid); waiting for lag 0", flush=True)
        while time.monotonic() - fed_at < s.drain_timeout_s:
            if lag_samples and lag_samples[-1][1] == 0 and lag_samples[-1][0] > fed_at:
                break
            time.sleep(s.sample_every_s)
        drained_s = time.monotonic() - fed_at
        exit_a = stop(workers["A"], 120)
        sampling.set()
        sampler.join(30)
        probe.close()
        results = read_topic(bootstrap, topics["out"], timeout_s=300)
        letters = read_topic(bootstrap, topics["dlq"], timeout_s=300)
    finally:
        sampling.set()
        for p in workers.values():
            stop(p, 60)
        triton.stop()
        cluster.down()
    ids = [r["post_id"] for r in results]
    letter_keys = [base64.b64decode(d["original_key_b64"]).decode() for d in letters if d.get("original_key_b64")]
    sent, bad = set(feeder.sent), set(feeder.bad)
    ends = [f["_at"] for f in faults[1:]] + [fed_at + drained_s]
    for f, next_at in zip(faults, ends):
        f.update(recovery(lag_samples, f.pop("_at"), f.pop("_done"), s.rate, next_at))
    warm = begin + s.warmup_share * s.duration_s
    half = begin + 0.5 * (fed_at - begin)
    slopes = {k: {"mb_per_h": round(slope_mb_per_h([p for p in v if p[0] >= warm]), 1),
                  "max_mb": round(max(r for _, r in v) / 2**20)}
              for k, v in rss.items() if v[0][0] <= half and v[-1][0] >= fed_at and sum(p[0] >= warm for p in v) > 10}
    return {
        "duration_s": s.duration_s, "rate": s.rate, "gate": s.rationale_gate, "load_1m_end": os.getloadavg()[0],
        "posts_sent": len(sent), "invalid_sent": len(bad), "feed_errors": feeder.errors,
        "results": len(ids), "unique_results": len(set(ids)), "duplicates": len(ids) - len(set(ids)),
        "dead_letters": len(letters), "lost": len(sent - set(ids)), "invalid_not_dead_lettered": len(bad - set(letter_keys)),
        "drain_after_feed_s": round(drained_s, 1), "worker_A_exit": exit_a, "faults": faults,
        "lag_series": [(round(t - begin), lag) for t, lag in lag_samples[::max(1, round(10 / s.sample_every_s))]],
        "rss": dict(sorted(slopes.items(), key=lambda kv: -kv[1]["mb_per_h"])),
    }


def main() -> int:
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the faults make it shout; the figures tell
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_settings_flags(parser, SoakSettings)
    s = settings_from_args(SoakSettings, parser.parse_args())
    out = run(s)
    s.out.parent.mkdir(parents=True, exist_ok=True)
    s.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    ok = out["lost"] == 0 and out["invalid_not_dead_lettered"] == 0
    print(f"[soak] {'nothing lost' if ok else 'LOST POSTS'}; figures in {s.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""`lrsa demo`: the whole pipeline on the embedded local stack, on the sample posts.

Starts Apache Kafka (KRaft, loopback) and a real tritonserver serving the fused SLM, sends the
sample posts, runs the worker (`lrsa run`: Ray ingest actors -> rationale LLM -> Triton scorer ->
output topic, bad posts -> dead-letter topic) until the input is drained, prints what came out,
and stops everything again.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lrsa.settings import LrsaSettings, add_settings_flags, data_dir_field, settings_from_args

REPO_ROOT = Path(__file__).resolve().parent.parent
CHILD_STOP_S = 30.0  # how long a stopped demo waits for its `lrsa` child to finish


class DemoSettings(LrsaSettings):
    """`lrsa demo` (env LRSA_DEMO_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_DEMO_", extra="ignore")

    posts: Path = Field(REPO_ROOT / "samples" / "posts.jsonl", description="posts to send, one JSON per line")
    checkpoint: Path = Field(REPO_ROOT / "checkpoints" / "lrsa-twitter2015",
                             description="fused SLM checkpoint; trained first if missing")
    data_dir: Path = data_dir_field("MABSA data, used to train a checkpoint if none exists")
    train_minutes: float = Field(10.0, description="training time budget of that first run (after a "
                                 "one-time encoding of the rationales)")
    partitions: int = Field(2, ge=1, description="partitions of the demo topics")
    rationale: bool = Field(True, description="generate LLM rationales (SmolLM2) for the posts")
    idle_s: float = Field(5.0, description="the worker stops once nothing arrived for this long")


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on the embedded local stack, on sample posts")
    add_settings_flags(p, DemoSettings)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    s = settings_from_args(DemoSettings, args)
    checkpoint = ensure_checkpoint(s)
    with tempfile.TemporaryDirectory(prefix="lrsa-demo-") as tmp:
        return run_demo(s, checkpoint, Path(tmp))


def ensure_checkpoint(s: DemoSettings) -> Path:
    """A trained checkpoint: the given one, or one trained now on the shared data (real weights)."""
    if (s.checkpoint / "config.json").exists():
        return s.checkpoint
    if not (s.data_dir / "twitter2015" / "train.json").exists():
        sys.exit(f"no checkpoint at {s.checkpoint} and no training data at {s.data_dir}: "
                 "pass --checkpoint or set LRSA_DATA_DIR")
    print(f"[demo] no checkpoint at {s.checkpoint}: training one on twitter2015 "
          f"(all-MiniLM-L6-v2, at most {s.train_minutes:.0f} min)", flush=True)
    _lrsa("train", "--dataset", "twitter2015", "--data-dir", str(s.data_dir), "--out", str(s.checkpoint),
          "--rationale-source", "reasons_masked", "--epochs", "4", "--max-minutes", str(s.train_minutes))
    return s.checkpoint


def run_demo(s: DemoSettings, checkpoint: Path, tmp: Path) -> int:
    from lrsa_cli.stack import local_stack
    from workers.kafka_stack import create_topics

    topics = {"input": "demo.posts", "output": "demo.results", "dlq": "demo.posts.dlq"}
    with local_stack(tmp, checkpoint, say=lambda m: print(f"[demo] {m}", flush=True)) as stack:
        bootstrap = stack.bootstrap
        create_topics(bootstrap, list(topics.values()), s.partitions)
        _lrsa("produce", "--file", str(s.posts), "--topic", topics["input"], "--bootstrap-servers", bootstrap)
        print("[demo] running the worker until the input is drained", flush=True)
        _lrsa("run", "--bootstrap-servers", bootstrap, "--input-topic", topics["input"],
              "--output-topic", topics["output"], "--dlq-topic", topics["dlq"], "--group-id", "demo",
              "--score-enabled", "--rationale-enabled" if s.rationale else "--no-rationale-enabled",
              "--metrics-port", "0", "--exit-when-idle", str(s.idle_s), env=stack.scorer_env)
        print_outputs(bootstrap, topics, s.posts)
    return 0


def _lrsa(*args: str, env: dict[str, str] | None = None) -> None:
    """Run an `lrsa` command; if the demo itself is stopped meanwhile, stop it first (SIGTERM: the
    worker drains and commits; Ctrl-C already reached it through the terminal)."""
    cmd = [sys.executable, "-m", "lrsa_cli.main", *args]
    with subprocess.Popen(cmd, env={**os.environ, **(env or {})}) as proc:
        try:
            rc = proc.wait()
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt):
                proc.terminate()
            try:
                proc.wait(CHILD_STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if rc:
        raise subprocess.CalledProcessError(rc, cmd)


def print_outputs(bootstrap: str, topics: dict[str, str], posts_file: Path) -> None:
    texts = {}
    for line in posts_file.read_text().splitlines():
        try:
            texts[json.loads(line)["id"]] = json.loads(line)["text"]
        except (ValueError, KeyError, TypeError):
            pass
    from lrsa_cli.stack import read_topic

    results = read_topic(bootstrap, topics["output"])
    dead = read_topic(bootstrap, topics["dlq"])
    print(f"\n=== {len(results)} results on {topics['output']} ===")
    for r in sorted(results, key=lambda r: r["post_id"]):
        print(f"\n{r['post_id']}: {texts.get(r['post_id'], '')}")
        for a in r["aspects"]:
            print(f"   {a['term']!r:32} [{a['start']}:{a['end']}]  {a['sentiment']:8} {a['confidence']:.2f}")
        if not r["aspects"]:
            print("   (no aspects)")
        if r.get("rationale"):
            print(f"   rationale: {' '.join(r['rationale'].split())[:160]}")
    print(f"\n=== {len(dead)} dead letters on {topics['dlq']} ===")
    for d in dead:
        raw = base64.b64decode(d["original_b64"])[:60]
        print(f"   {d['error']['reason']:18} {d['error']['message'][:70]!s:72} {raw!r}")

"""`lrsa demo`: the whole pipeline on the embedded local stack, on the sample posts.

Starts Apache Kafka (KRaft, loopback) and a real tritonserver serving the fused SLM, sends the
sample posts and the brand stream sample, runs the worker (`lrsa run`: Ray ingest actors ->
rationale LLM -> Triton scorer -> output topic, bad posts -> dead-letter topic) until the input is
drained, prints what came out and the per-entity brand table (lrsa_cli/brand_table.py), and stops
everything again. With --dashboard it then keeps the stack up, runs `lrsa aggregate` and
`lrsa dashboard` on the results and waits for Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lrsa.offline_models import DEFAULT_MODEL
from lrsa.paths import resource, workspace
from lrsa.settings import LrsaSettings, SettingsError, add_settings_flags, data_dir_field, settings_from_args

# `lrsa train` flags of the shipped model (models/lrsa-default/MODEL_CARD.md), less --epochs/--out
DEFAULT_RECIPE = ("--dataset", "twitter2015,twitter2017", "--brand-posts", "1500", "--dev-text-only",
                  "--rationale-source", "reasons_masked", "--modality-dropout", "0.5", "--tsa-ratio", "0.25",
                  "--tsa-loss-weight", "0.5", "--ema-decay", "0.995", "--seed", "13")
CHILD_STOP_S = 30.0  # how long a stopped demo waits for its `lrsa` child to finish


class DemoSettings(LrsaSettings):
    """`lrsa demo` (env LRSA_DEMO_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_DEMO_", extra="ignore")

    posts: Path = Field(resource("samples/posts.jsonl"), description="posts to send, one JSON per line "
                        "(each printed with its aspects)")
    brand_posts: Path | None = Field(resource("samples/brand_stream.jsonl"),
                                     description="more posts to send, summed up in the per-entity table only "
                                     "(none: just --posts)")
    brand_rationale: bool = Field(False, description="LLM rationales for the brand posts too (slower: "
                                  "about 1 post/s on 2 cores; off, they are scored without rationale)")
    entity_aliases: Path | None = Field(resource("deploy/entities.aliases.yaml"),
                                        description="alias file of the worker's entity normaliser")
    dashboard: bool = Field(False, description="after the run keep the stack up, run `lrsa aggregate` and "
                            "`lrsa dashboard` on the results, print the URL and wait for Ctrl-C")
    dashboard_port: int = Field(8050, ge=0, le=65535, description="port of the dashboard (--dashboard)")
    checkpoint: Path = Field(DEFAULT_MODEL, description="fused SLM checkpoint folder or packed model (default: "
                             "the shipped model, models/lrsa-default)")
    train: bool = Field(False, description="train a checkpoint first, on --data-dir with the shipped model's "
                        "recipe (models/lrsa-default/MODEL_CARD.md), into --train-out, and run the demo on it")
    train_out: Path = Field(default_factory=lambda: workspace() / "checkpoints" / "lrsa-first-run", description="where --train writes "
                            "its checkpoint (an unfinished run there resumes)")
    train_epochs: int = Field(8, ge=1, description="epochs of --train: a fixed amount of work, whatever the "
                              "machine's load (about 6 min an epoch on 2 idle cores)")
    data_dir: Path = data_dir_field("MABSA data, used by --train")
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
    """The checkpoint to serve: the given one (the shipped model by default), or with --train one
    trained now with the shipped recipe for a fixed number of epochs."""
    from lrsa.model_pack import resolve_checkpoint

    if not s.train:
        return resolve_checkpoint(s.checkpoint)  # missing or corrupt: one line naming the fix
    if not (s.data_dir / "twitter2015" / "train.json").exists():
        raise SettingsError(f"--train needs the MABSA data at {s.data_dir}: set LRSA_DATA_DIR or --data-dir")
    print(f"[demo] training {s.train_out} ({s.train_epochs} epochs, the shipped model's recipe; progress and "
          "ETA below, rerun to resume)", flush=True)
    _lrsa("train", *DEFAULT_RECIPE, "--epochs", str(s.train_epochs), "--data-dir", str(s.data_dir),
          "--out", str(s.train_out))
    return s.train_out


def run_demo(s: DemoSettings, checkpoint: Path, tmp: Path) -> int:
    from lrsa_cli.stack import local_stack
    from workers.devstack.kafka_stack import create_topics

    topics = {"input": "demo.posts", "brand_input": "demo.brand_posts", "output": "demo.results",
              "dlq": "demo.posts.dlq",
              "aggregates": "demo.aggregates", "alerts": "demo.alerts"}
    start = last = time.monotonic()
    timings: list[tuple[str, float]] = []

    def timed(name: str) -> None:
        nonlocal last
        timings.append((name, time.monotonic() - last))
        last = time.monotonic()

    with local_stack(tmp, checkpoint, say=lambda m: print(f"[demo] {m}", flush=True)) as stack:
        bootstrap = stack.bootstrap
        create_topics(bootstrap, [topics[k] for k in ("input", "brand_input", "output", "dlq")], s.partitions)

        def work(posts: Path, input_topic: str, rationale: bool) -> None:
            _lrsa("produce", "--file", str(posts), "--topic", input_topic, "--bootstrap-servers", bootstrap)
            print(f"[demo] running the worker on {posts.name} until the input is drained", flush=True)
            _lrsa("run", "--bootstrap-servers", bootstrap, "--input-topic", input_topic,
                  "--output-topic", topics["output"], "--dlq-topic", topics["dlq"], "--group-id", "demo",
                  "--score-enabled", "--rationale-enabled" if rationale else "--no-rationale-enabled",
                  "--metrics-port", "0", "--exit-when-idle", str(s.idle_s),
                  *(["--entity-aliases", str(s.entity_aliases)] if s.entity_aliases else []), env=stack.scorer_env)

        timed("stack up (Kafka, tritonserver)")
        work(s.posts, topics["input"], s.rationale)
        timed(f"{s.posts.name} through the pipeline")
        print_posts(bootstrap, topics, s.posts)
        if s.brand_posts is not None:
            work(s.brand_posts, topics["brand_input"], s.rationale and s.brand_rationale)
            timed(f"{s.brand_posts.name} through the pipeline")
            print_brand_view(bootstrap, topics)
        print("[demo] elapsed: " + "; ".join(f"{name} {sec:.0f} s" for name, sec in timings)
              + f"; total {time.monotonic() - start:.0f} s", flush=True)
        if s.dashboard:
            serve_dashboard(s, bootstrap, topics, tmp)
    return 0


DASHBOARD_START_S = 120.0  # how long the dashboard may take to serve its page


def serve_dashboard(s: DemoSettings, bootstrap: str, topics: dict[str, str], tmp: Path) -> None:
    """`lrsa aggregate` + `lrsa dashboard` on the demo's results until Ctrl-C (or one of them
    exits); then both are stopped (SIGTERM, killed past CHILD_STOP_S) before the stack goes."""
    import socket

    from lrsa_cli.brand_table import DEMO_SHIFT

    kafka = ["--bootstrap-servers", bootstrap, "--aggregates-topic", topics["aggregates"],
             "--alerts-topic", topics["alerts"]]
    procs = [
        _spawn("aggregate", *kafka, "--input-topic", topics["output"], "--group-id", "demo-aggregate",
               "--auto-offset-reset", "earliest", "--windows", "10m,1h", "--alert-window", "1h",
               # the sample is a replayed backlog, read from two partitions: late by design
               "--allowed-lateness-s", "7200", "--state-dir", str(tmp / "aggregate-state"),
               "--topic-partitions", "1", "--metrics-port", "0",
               "--alert-min-mentions", str(DEMO_SHIFT.min_mentions),
               "--alert-min-baseline-mentions", str(DEMO_SHIFT.min_baseline_mentions)),
        _spawn("dashboard", *kafka, "--results-topic", topics["output"], "--http-port", str(s.dashboard_port)),
    ]
    try:
        deadline = time.monotonic() + DASHBOARD_START_S
        while True:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("lrsa aggregate or lrsa dashboard exited early, see its log above")
            try:
                socket.create_connection(("127.0.0.1", s.dashboard_port), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the dashboard did not listen on port {s.dashboard_port} "
                                       f"within {DASHBOARD_START_S:.0f}s") from None
                time.sleep(0.5)
        print(f"\n[demo] dashboard: http://127.0.0.1:{s.dashboard_port}/  (Ctrl-C stops everything)", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("[demo] lrsa aggregate or lrsa dashboard exited; stopping", flush=True)
    except KeyboardInterrupt:
        print("\n[demo] stopping the dashboard, the aggregator and the stack", flush=True)
    finally:
        _stop_all(procs)


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lrsa_cli.main", *args])


def _stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each still running child, then wait for all within CHILD_STOP_S; kill the rest."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + CHILD_STOP_S
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


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


def print_posts(bootstrap: str, topics: dict[str, str], posts_file: Path) -> None:
    """Each post of `posts_file` with its aspects and rationale, then the dead letters."""
    texts = {}
    for line in posts_file.read_text().splitlines():
        try:
            texts[json.loads(line)["id"]] = json.loads(line)["text"]
        except (ValueError, KeyError, TypeError):
            pass
    from lrsa_cli.stack import read_topic

    results = read_topic(bootstrap, topics["output"])
    dead = read_topic(bootstrap, topics["dlq"])
    shown = sorted((r for r in results if r["post_id"] in texts), key=lambda r: r["post_id"])
    print(f"\n=== {len(results)} results on {topics['output']}; the {len(shown)} of {posts_file.name} ===")
    for r in shown:
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


def print_brand_view(bootstrap: str, topics: dict[str, str]) -> None:
    """Every result of the run summed up per entity, with shift alerts (lrsa_cli/brand_table.py)."""
    from lrsa_cli.brand_table import DEMO_WINDOW_MS, entity_table, format_table
    from lrsa_cli.stack import read_topic

    results = read_topic(bootstrap, topics["output"])
    print(f"\n=== brand view: {len(results)} results by entity (event-time windows of "
          f"{DEMO_WINDOW_MS // 60000} min; shift alerts as `lrsa aggregate` would fire them) ===")
    print(format_table(entity_table(results)))

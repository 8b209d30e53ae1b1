"""`lrsa bench live-quality`: labelled posts through the real pipeline, scored against their labels.

Starts the embedded Kafka and a real tritonserver serving `--checkpoint` (lrsa_cli/stack.py, as the
demo does), then for each mode runs the worker's own driver (`workers.driver.pipeline.Pipeline`, what
`lrsa run` runs: Ray ingest actors -> SmolLM2 rationale stage -> Triton score stage -> output
topic) on fresh topics and a fresh consumer group until the input is drained: once with the
rationale stage on ("with"), once with it off ("without"), and with `--gate T[,T...]` once per
threshold with the rationale gate (`lrsa run --rationale-gate T`: text-only prescore, the LLM only
for the posts below T, then a re-score; "gated@T"). It reads each run's output topic,
scores it against the gold with `lrsa.quality` (JMASA, MATE, MASC) and reports them, the
rationale gain (with minus without), the share of posts a gated run sent to the LLM (its results'
`rationale_used`) and each run's posts/s (first record fetched -> last commit, as `lrsa bench
pipeline` measures it: start-up is not counted) with their ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from lrsa.offline_models import DEFAULT_MODEL
from lrsa.settings import LrsaSettings, SettingsError, add_settings_flags, data_dir_field, settings_from_args

log = logging.getLogger("lrsa.live_quality")

MODES = ("with", "without", "gated")
PROGRESS_EVERY_S = 10.0
STOP_GRACE_S = 60.0  # after a run's deadline: how long its graceful stop may take on top of the drain


class LiveQualitySettings(LrsaSettings):
    """`lrsa bench live-quality` (env LRSA_LIVE_QUALITY_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_LIVE_QUALITY_", extra="ignore")

    gold: Path | None = Field(None, description="labelled posts, JSONL: {id, text, aspects: [{term, start, "
                              "end, sentiment}]} with character offsets (lrsa/quality.py)")
    dataset: Literal["twitter2015", "twitter2017"] | None = Field(
        None, description="instead of --gold: this MABSA benchmark's split, converted on the fly")
    split: Literal["train", "dev", "test"] = Field("dev", description="split of --dataset")
    data_dir: Path = data_dir_field()
    checkpoint: Path = Field(DEFAULT_MODEL,
                             description="fused SLM checkpoint that tritonserver serves")
    limit: int | None = Field(None, ge=1, description="only the first N labelled posts")
    modes: str = Field("with,without", description="runs, in order: with (rationale stage on), without "
                       "(off), gated (the rationale gate, one run per --gate threshold); any of them alone "
                       "runs just that")
    gate: str | None = Field(None, description="rationale-gate thresholds in [0, 1], comma separated: a gated "
                             "run for each (added after --modes unless they name gated)")
    partitions: int = Field(2, ge=1, description="partitions of each run's topics")
    idle_s: float = Field(3.0, gt=0, description="a run ends once its input is drained and idle this long")
    run_timeout_s: float = Field(3600.0, gt=0, description="deadline of each run (then it is stopped "
                                 "and the command fails)")
    triton_threads: int | None = Field(None, ge=1, description="torch threads of the served model "
                                       "(default: torch's)")
    out: Path | None = Field(None, description="also write the report as JSON to this file")
    records_dir: Path | None = Field(None, description="also write each run's output records here "
                                     "(results-<mode>.jsonl)")

    @field_validator("modes")
    @classmethod
    def _known_modes(cls, spec: str) -> str:
        names = [m.strip() for m in spec.split(",") if m.strip()]
        if not names or any(m not in MODES for m in names) or len(set(names)) != len(names):
            raise ValueError(f"modes must be with, without and/or gated, comma-separated; got {spec!r}")
        return ",".join(names)

    @field_validator("gate")
    @classmethod
    def _thresholds(cls, spec: str | None) -> str | None:
        if spec is None:
            return None
        try:
            values = [float(t) for t in spec.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"gate thresholds must be numbers, comma separated; got {spec!r}") from None
        if not values or any(not 0 <= t <= 1 for t in values) or len(set(values)) != len(values):
            raise ValueError(f"gate thresholds must be distinct numbers in [0, 1]; got {spec!r}")
        return ",".join(f"{t:g}" for t in values)

    @model_validator(mode="after")
    def _one_gold_source(self) -> LiveQualitySettings:
        if (self.gold is None) == (self.dataset is None):
            raise ValueError("give the labelled posts: either --gold FILE or --dataset NAME [--split SPLIT]")
        if "gated" in self.modes.split(",") and self.gate is None:
            raise ValueError("mode gated needs --gate THRESHOLD[,THRESHOLD...]")
        return self

    @property
    def mode_list(self) -> list[str]:
        """The modes in run order; a gate given without naming gated adds it last."""
        modes = self.modes.split(",")
        return modes + ["gated"] if self.gate is not None and "gated" not in modes else modes

    @property
    def runs(self) -> list[tuple[str, str, float | None]]:
        """(run name, mode, gate threshold) in order: a gated run per threshold, "gated@T"."""
        out: list[tuple[str, str, float | None]] = []
        for mode in self.mode_list:
            if mode == "gated":
                out += [(f"gated@{t}", mode, float(t)) for t in (self.gate or "").split(",")]
            else:
                out.append((mode, mode, None))
        return out


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("live-quality", help="labelled posts through the real pipeline (Kafka, Ray, "
                         "SmolLM2, Triton) with and without the rationale stage: JMASA/MATE/MASC, posts/s")
    add_settings_flags(p, LiveQualitySettings)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=_bench_live_quality)


def _bench_live_quality(args: argparse.Namespace) -> int:
    s = settings_from_args(LiveQualitySettings, args)
    report = run_live_quality(s)
    print(json.dumps(report) if args.json else render(report))
    return 0


def load_gold_posts(s: LiveQualitySettings) -> tuple[list, str]:
    """The labelled posts (at most s.limit) and where they came from."""
    from lrsa.quality import load_gold

    if s.gold is not None:
        if not s.gold.exists():
            raise SettingsError(f"no gold file at {s.gold}")
        posts, source = load_gold(s.gold), str(s.gold)
    else:
        from lrsa_cli.gold import split_to_gold

        if not (s.data_dir / s.dataset / f"{s.split}.json").exists():
            raise SettingsError(f"no {s.dataset}/{s.split}.json under {s.data_dir}: set --data-dir or "
                                "LRSA_DATA_DIR, or pass --gold FILE")
        posts, source = split_to_gold(s.data_dir, s.dataset, s.split, s.limit), f"{s.dataset}/{s.split}"
    posts = posts[: s.limit] if s.limit else posts
    if not posts:
        raise SettingsError(f"no labelled posts in {source}")
    return posts, source


def run_live_quality(s: LiveQualitySettings) -> dict[str, Any]:
    from lrsa_cli.stack import local_stack

    gold, source = load_gold_posts(s)
    n_aspects = sum(len(g.aspects) for g in gold)
    log.info("%d labelled posts (%d aspects) from %s; runs: %s", len(gold), n_aspects, source,
             ", ".join(name for name, _, _ in s.runs))
    lines = [json.dumps(g.post()).encode() for g in gold]
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lrsa-live-quality-") as tmp, \
            local_stack(Path(tmp), s.checkpoint, triton_threads=s.triton_threads, say=log.info) as stack:
        for name, mode, gate in s.runs:
            runs[name] = run_mode(s, stack, mode, gold, lines, gate, name)
    report: dict[str, Any] = {"gold": {"source": source, "posts": len(gold), "aspects": n_aspects},
                              "checkpoint": str(s.checkpoint), "runs": runs}
    if "with" in runs and "without" in runs:
        w, wo = runs["with"]["scores"], runs["without"]["scores"]
        report["rationale_gain"] = {
            "jmasa_f1": w["jmasa"]["f1"] - wo["jmasa"]["f1"], "mate_f1": w["mate"]["f1"] - wo["mate"]["f1"],
            "masc_accuracy": w["masc"]["accuracy"] - wo["masc"]["accuracy"],
            "masc_macro_f1": w["masc"]["macro_f1"] - wo["masc"]["macro_f1"]}
        rates = runs["with"]["posts_per_s"], runs["without"]["posts_per_s"]
        report["posts_per_s_ratio_with_over_without"] = rates[0] / rates[1] if all(rates) else None
    gated = {name: run for name, run in runs.items() if run["rationale_gate"] is not None}
    if gated:
        report["gated"] = {name: _against(run, runs) for name, run in gated.items()}
    if s.out:
        s.out.parent.mkdir(parents=True, exist_ok=True)
        s.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _against(run: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A gated run beside the ungated ones: share sent to the LLM, JMASA F1 and posts/s differences."""
    out: dict[str, Any] = {"threshold": run["rationale_gate"], "share_sent": run["share_sent"],
                           "jmasa_f1": run["scores"]["jmasa"]["f1"], "posts_per_s": run["posts_per_s"]}
    for other in ("with", "without"):
        if other in runs:
            out[f"jmasa_f1_minus_{other}"] = run["scores"]["jmasa"]["f1"] - runs[other]["scores"]["jmasa"]["f1"]
            rates = run["posts_per_s"], runs[other]["posts_per_s"]
            out[f"posts_per_s_over_{other}"] = rates[0] / rates[1] if all(rates) else None
    return out


def run_mode(s: LiveQualitySettings, stack, mode: str, gold: list, lines: list[bytes], gate: float | None = None,
             name: str | None = None) -> dict[str, Any]:
    """One run of the worker on fresh topics: produce, drain, read back, score."""
    from lrsa.quality import score, summary_line
    from lrsa_cli.stack import read_topic
    from workers.bench.pipeline import posts_per_s
    from workers.config import KafkaClientSettings, WorkerSettings
    from workers.devstack.kafka_stack import create_topics
    from workers.devstack.produce import send_lines

    name = name or mode
    tag = f"lq-{mode}-{uuid.uuid4().hex[:6]}"
    topics = {"input": f"{tag}.posts", "output": f"{tag}.results", "dlq": f"{tag}.dlq"}
    create_topics(stack.bootstrap, list(topics.values()), s.partitions)
    send_lines(KafkaClientSettings(bootstrap_servers=stack.bootstrap), topics["input"], lines,
               total=len(lines), progress=False)
    log.info("%s: %d posts on %s; running the worker (rationale stage %s, score stage on)", name, len(lines),
             topics["input"], {"with": "on", "without": "off"}.get(mode, f"behind the gate at {gate}"))
    ws = WorkerSettings(bootstrap_servers=stack.bootstrap, input_topic=topics["input"],
                        output_topic=topics["output"], dlq_topic=topics["dlq"], group_id=tag,
                        rationale_enabled=mode in ("with", "gated"), score_enabled=True,
                        rationale_gate=gate if mode == "gated" else None, exit_when_idle=s.idle_s,
                        metrics_port=0)
    started = time.monotonic()
    finals = _drain(ws, name, len(lines), s.run_timeout_s, stack.scorer_env)
    run_s = time.monotonic() - started
    results = read_topic(stack.bootstrap, topics["output"])
    dead = read_topic(stack.bootstrap, topics["dlq"])
    if s.records_dir:
        s.records_dir.mkdir(parents=True, exist_ok=True)
        (s.records_dir / f"results-{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    scores = score(gold, results)
    consumed = sum(st["consumed"] for st in finals)
    rate = posts_per_s(finals) if consumed else None
    sent = sum(bool(r.get("rationale_used")) for r in results)
    log.info("%s: %d results, %d dead letters, %s posts/s, %d sent to the LLM; %s", name, len(results), len(dead),
             f"{rate:.2f}" if rate else "-", sent, summary_line(scores))
    return {"rationale_stage": mode in ("with", "gated"), "rationale_gate": gate if mode == "gated" else None,
            "sent_to_llm": sent, "share_sent": sent / len(results) if results else None,
            "consumed": consumed, "results": len(results),
            "dead_letters": len(dead), "dead_letter_reasons": sorted({d["error"]["reason"] for d in dead}),
            "posts_per_s": rate, "run_s": run_s, "scores": scores}


def _drain(ws, mode: str, n: int, timeout_s: float, env: dict[str, str]) -> list[dict[str, Any]]:
    """Run the worker's driver until the input is drained; its ingest actors' final statuses.

    A local Ray of its own per run (the stage actors read the scorer's address from the
    environment Ray starts them with); progress every PROGRESS_EVERY_S; TimeoutError past the
    deadline (after stopping the worker)."""
    import ray

    from workers.driver.pipeline import Pipeline

    if ray.is_initialized():
        ray.shutdown()
    pipeline = Pipeline(ws)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["rc"] = pipeline.run()
        except BaseException as e:  # reported by the waiting thread
            outcome["error"] = e

    with _environ(env):
        thread = threading.Thread(target=target, name=f"live-quality-{mode}", daemon=True)
        started = time.monotonic()
        deadline, stop_deadline = started + timeout_s, None
        next_progress = started + PROGRESS_EVERY_S
        try:
            thread.start()
            while thread.is_alive():
                thread.join(0.5)
                now = time.monotonic()
                if now >= next_progress:
                    if pipeline.statuses:
                        consumed = sum(st["consumed"] for st in pipeline.statuses)
                        log.info("%s: %d/%d posts consumed after %.0f s", mode, consumed, n, now - started)
                    else:  # Ray, the stage actors (SmolLM2 load + warm-up) and the ingest actors
                        log.info("%s: 0/%d posts consumed after %.0f s: the worker is starting", mode, n,
                                 now - started)
                    next_progress = now + PROGRESS_EVERY_S
                if stop_deadline is None and now >= deadline:
                    log.error("%s: not drained after %.0f s: stopping the worker", mode, timeout_s)
                    pipeline.stop_requested.set()
                    stop_deadline = now + ws.drain_timeout_s + STOP_GRACE_S
                if stop_deadline is not None and now >= stop_deadline:
                    break
        finally:
            ray.shutdown()
    if "error" in outcome:
        raise RuntimeError(f"{mode}: the worker failed: {outcome['error']!r}") from outcome["error"]
    if stop_deadline is not None:
        raise TimeoutError(f"{mode}: the worker did not drain {n} posts within {timeout_s:.0f} s")
    if outcome.get("rc") != 0:
        raise RuntimeError(f"{mode}: the worker exited with {outcome.get('rc')}")
    return pipeline.final_statuses


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (Ray starts its workers with this environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def render(report: dict[str, Any]) -> str:
    from lrsa.quality import summary_line

    g = report["gold"]
    lines = [f"gold: {g['posts']} posts, {g['aspects']} aspects ({g['source']}); checkpoint {report['checkpoint']}"]
    for mode, run in report["runs"].items():
        rate = f"{run['posts_per_s']:.2f}" if run["posts_per_s"] else "-"
        sent = f", {100 * run['share_sent']:.1f}% sent to the LLM" if run.get("share_sent") is not None else ""
        lines.append(f"{mode:>8} rationale: {rate} posts/s, {run['results']} results{sent}, "
                     f"{run['dead_letters']} dead letters; {summary_line(run['scores'])}")
        per_class = run["scores"]["masc"]["per_class"]
        lines.append(" " * 19 + "MASC recall " + ", ".join(f"{c} {v['recall']:.1f} (n={v['support']})"
                                                            for c, v in per_class.items()))
    if "rationale_gain" in report:
        gain = report["rationale_gain"]
        lines.append(f"rationale gain: JMASA F1 {gain['jmasa_f1']:+.2f}, MATE F1 {gain['mate_f1']:+.2f}, "
                     f"MASC acc {gain['masc_accuracy']:+.2f}, macro-F1 {gain['masc_macro_f1']:+.2f}")
        ratio = report["posts_per_s_ratio_with_over_without"]
        lines.append(f"posts/s with / without the rationale stage: {ratio:.3f}" if ratio else
                     "posts/s ratio: -")
    for name, g in report.get("gated", {}).items():
        parts = [f"{name}: {100 * g['share_sent']:.1f}% of posts sent to the LLM" if g["share_sent"] is not None
                 else f"{name}: no results"]
        for other in ("with", "without"):
            if f"jmasa_f1_minus_{other}" in g:
                ratio = g[f"posts_per_s_over_{other}"]
                parts.append(f"JMASA F1 {g[f'jmasa_f1_minus_{other}']:+.2f} vs {other}, posts/s x"
                             + (f"{ratio:.2f}" if ratio else " -"))
        lines.append("; ".join(parts))
    return "\n".join(lines)

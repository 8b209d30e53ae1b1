"""`lrsa bench gate-curve`: JMASA F1 against the share of posts sent to the LLM, offline.

What the rationale gate (`lrsa run --rationale-gate T`, lrsa/gate.py) would do on a labelled split,
without Kafka, Ray, Triton or the LLM at run time: each post of the split that has a rationale in
the JSONL of the batch job (`lrsa rationales --dataset D --split S --out FILE`) is scored twice,
in-process, with the checkpoint: from its text alone and with its rationale (as the live pipeline
does: the words joined by spaces, no image description). Each post's certainty comes from the
text-only scoring (the rule of lrsa/gate.py, on the checkpoint's calibrated confidences where it
has a calibration). Then for each threshold the gated output takes the with-rationale prediction
for the posts below the threshold and the text-only one for the rest, and is scored with
lrsa.quality (the rules of `lrsa bench live-quality`): one row per threshold with the share of
posts sent, JMASA P/R/F1, MATE F1 and MASC accuracy / macro-F1, beside the mean JMASA F1 of random
choices of as many posts (what ordering by certainty must beat). The last row, "all", is no gate.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from lrsa.offline_models import DEFAULT_MODEL
from lrsa.settings import LrsaSettings, SettingsError, add_settings_flags, data_dir_field, settings_from_args

log = logging.getLogger("lrsa.gate_curve")



class GateCurveSettings(LrsaSettings):
    """`lrsa bench gate-curve` (env LRSA_GATE_CURVE_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_GATE_CURVE_", extra="ignore")

    checkpoint: Path = Field(DEFAULT_MODEL, description="fused SLM checkpoint")
    rationales: Path = Field(..., description="JSONL of post-level rationales from `lrsa rationales` "
                             "(joined by image_id); only the split's posts found there are scored")
    dataset: Literal["twitter2015", "twitter2017"] = Field("twitter2015", description="MABSA benchmark")
    split: Literal["train", "dev", "test"] = Field("dev", description="split of --dataset")
    data_dir: Path = data_dir_field()
    thresholds: str = Field("0,0.3,0.4,0.5,0.6,0.7,0.8,0.85,0.9,0.95,1",
                            description="gate thresholds, comma separated, each in [0, 1]")
    batch_size: int = Field(32, ge=1, description="posts per forward pass")
    threads: int = Field(1, ge=1, description="torch CPU threads")
    random_draws: int = Field(20, ge=0, description="per threshold, the mean JMASA F1 of this many random "
                              "choices of as many posts (the baseline the certainty ordering must beat); 0: off")
    out: Path | None = Field(None, description="also write the report as JSON to this file")

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, spec: str) -> str:
        try:
            values = [float(t) for t in spec.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"thresholds must be numbers, comma separated; got {spec!r}") from None
        if not values or any(not 0 <= t <= 1 for t in values):
            raise ValueError(f"thresholds must lie in [0, 1]; got {spec!r}")
        return ",".join(f"{t:g}" for t in values)

    @property
    def threshold_list(self) -> list[float]:
        return [float(t) for t in self.thresholds.split(",")]


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("gate-curve", help="offline: JMASA F1 against the share of posts the rationale gate "
                         "sends to the LLM, per threshold (a checkpoint and a rationale JSONL)")
    add_settings_flags(p, GateCurveSettings)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=_bench_gate_curve)


def _bench_gate_curve(args: argparse.Namespace) -> int:
    s = settings_from_args(GateCurveSettings, args)
    report = run_gate_curve(s)
    print(json.dumps(report) if args.json else render(report))
    return 0


def load_posts(s: GateCurveSettings) -> tuple[list, list[str]]:
    """The split's gold posts that have a rationale in the file, and their rationales."""
    from lrsa_cli.gold import split_to_gold
    from training.data import _stem, load_rationale_file

    if not s.rationales.exists():
        raise SettingsError(f"no rationale file at {s.rationales}: `lrsa rationales --dataset {s.dataset} "
                            f"--split {s.split} --out FILE` writes one")
    if not (s.data_dir / s.dataset / f"{s.split}.json").exists():
        raise SettingsError(f"no {s.dataset}/{s.split}.json under {s.data_dir}: set --data-dir or LRSA_DATA_DIR")
    by_image = load_rationale_file(s.rationales)
    gold = [g for g in split_to_gold(s.data_dir, s.dataset, s.split) if _stem(g.meta["image_id"]) in by_image]
    if not gold:
        raise SettingsError(f"none of the {s.dataset}/{s.split} posts has a rationale in {s.rationales}")
    return gold, [by_image[_stem(g.meta["image_id"])] for g in gold]


def score_posts(predictor, texts: list[str], rationales: list[str | None] | None,
                batch_size: int = 32) -> tuple[list[list], list[float | None]]:
    """Per post its aspects and (for a post without any) the no-aspect certainty, as the score
    stage computes them (workers/stages/score.py), from the in-process model."""
    import torch

    from lrsa.gate import no_aspect_certainty
    from lrsa.predict import decode_batch, encode_batch, word_probabilities

    aspects: list[list] = []
    none_certainty: list[float | None] = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            part = slice(i, i + batch_size)
            tensors, meta = encode_batch(predictor.tokenizer, predictor.model.config, texts[part],
                                         rationales[part] if rationales else None, None)
            logits = predictor.model(**{k: v.to(predictor.device) for k, v in tensors.items()})
            found = decode_batch(logits, meta, texts[part], predictor.calibration)
            none_certainty += [None if a else no_aspect_certainty(word_probabilities(row, m.first_token))
                               for row, m, a in zip(logits, meta, found)]
            aspects += found
    return aspects, none_certainty


def run_gate_curve(s: GateCurveSettings) -> dict[str, Any]:
    import time

    import torch

    from lrsa.gate import curve, post_certainty, random_baseline
    from lrsa.predict import Predictor

    if not (s.checkpoint / "config.json").exists():
        raise SettingsError(f"no fused-SLM checkpoint at {s.checkpoint}: pass --checkpoint DIR")
    gold, rationales = load_posts(s)
    torch.set_num_threads(s.threads)
    predictor = Predictor.from_checkpoint(s.checkpoint)
    texts = [g.text for g in gold]
    log.info("%d %s/%s posts with a rationale; scoring each text only and with its rationale", len(gold),
             s.dataset, s.split)
    t0 = time.perf_counter()
    text_only, none_certainty = score_posts(predictor, texts, None, s.batch_size)
    with_rationale, _ = score_posts(predictor, texts, rationales, s.batch_size)
    certainties = [post_certainty(a, n) for a, n in zip(text_only, none_certainty)]
    ids = [g.id for g in gold]
    rows = curve(gold, ids, text_only, with_rationale, certainties, [*s.threshold_list, None])
    if s.random_draws:
        for row in rows:
            row["jmasa_f1_random_same_share"] = random_baseline(gold, ids, text_only, with_rationale, row["sent"],
                                                                s.random_draws)
    report = {"checkpoint": str(s.checkpoint), "rationales": str(s.rationales),
              "gold": {"source": f"{s.dataset}/{s.split}", "posts": len(gold),
                       "aspects": sum(len(g.aspects) for g in gold)},
              "calibrated": predictor.calibration is not None,
              "posts_without_aspects_text_only": sum(not a for a in text_only),
              "scoring_s": time.perf_counter() - t0, "rows": rows}
    if s.out:
        s.out.parent.mkdir(parents=True, exist_ok=True)
        s.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def render(report: dict[str, Any]) -> str:
    g = report["gold"]
    lines = [f"{g['posts']} posts, {g['aspects']} aspects ({g['source']}, those with a rationale in "
             f"{report['rationales']}); checkpoint {report['checkpoint']} "
             f"({'calibrated' if report['calibrated'] else 'uncalibrated'} confidences); "
             f"{report['posts_without_aspects_text_only']} posts without aspects from text alone",
             f"{'threshold':>9}  {'sent':>9}  {'share':>6}  {'JMASA P':>7}  {'R':>5}  {'F1':>5}  "
             f"{'MATE F1':>7}  {'MASC acc':>8}  {'macro-F1':>8}  {'random F1':>9}"]
    for r in report["rows"]:
        t = "all" if r["threshold"] is None else f"{r['threshold']:g}"
        lines.append(f"{t:>9}  {r['sent']:>4}/{r['posts']:<4}  {100 * r['share_sent']:5.1f}%  "
                     f"{r['jmasa_precision']:7.1f}  {r['jmasa_recall']:5.1f}  {r['jmasa_f1']:5.1f}  "
                     f"{r['mate_f1']:7.1f}  {r['masc_accuracy']:8.1f}  {r['masc_macro_f1']:8.1f}  "
                     + (f"{r['jmasa_f1_random_same_share']:9.1f}" if "jmasa_f1_random_same_share" in r else f"{'-':>9}"))
    return "\n".join(lines)

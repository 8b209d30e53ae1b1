"""`lrsa bench rationale-quality`: how often a rationale states the gold aspects' sentiments.

The rationales of a MABSA split's first N posts (generated here with the serving engine and a
prompt version, read from a batch-job JSONL, or the dataset's own per-aspect reasons joined as
`load_split` joins them) are read by `lrsa.rationale.verdicts` and scored against the gold
aspects: accuracy over gold aspects, mention share, per-class recall, template share; plus
seconds and tokens/s when generated. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lrsa.rationale.config import RationaleSettings
from lrsa.rationale.prompts import TEMPLATES, get_template, listed_names
from lrsa.rationale.verdicts import Item, score, term_pattern
from lrsa.settings import add_settings_flags, data_dir_field, settings_from_args

log = logging.getLogger(__name__)

SENTIMENT = {"POS": "positive", "NEU": "neutral", "NEG": "negative"}
_TEACHER_LABEL = re.compile(r"^\W*sentiment\s*[:=-]?\s*([a-z]+)", re.IGNORECASE)


class RationaleQualitySettings(RationaleSettings):
    """`lrsa bench rationale-quality` (env LRSA_RATIONALE_QUALITY_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_RATIONALE_QUALITY_")

    dataset: str = Field("twitter2015", description="twitter2015 or twitter2017")
    split: str = Field("dev", description="train or dev")
    limit: int | None = Field(150, ge=1, description="the first N posts of the split")
    data_dir: Path = data_dir_field()
    rationale_file: Path | None = Field(None, description="score this batch-job JSONL instead of generating")
    reasons: bool = Field(False, description="score the dataset's own per-aspect reasons (the teacher) instead")
    out: Path | None = Field(None, description="also write the generated rationales here (batch-job JSONL)")
    chunk_size: int = Field(64, ge=1, description="posts per engine call")


def gold_items(examples, rationales: list[str | None]) -> list[Item]:
    return [Item(r, [(" ".join(e.words[s:t]), SENTIMENT[p]) for s, t, p in e.spans])
            for e, r in zip(examples, rationales)]


def names_answered(texts: list[str], rationales: list[str | None], version: str) -> dict | None:
    """For a prompt that lists the post's candidate names: how many of them the rationale answers
    with a line of their own ("Name: ..."); None for other prompts."""
    if not get_template(version).name_lines:
        return None
    listed = answered = 0
    for text, rationale in zip(texts, rationales):
        heads = [line.split(":", 1)[0] for line in (rationale or "").splitlines() if ":" in line]
        for name in listed_names(text, version):
            listed += 1
            pattern = term_pattern(name)
            answered += bool(pattern and any(pattern.search(h) for h in heads))
    return {"listed": listed, "answered": answered,
            "share": round(100.0 * answered / listed, 2) if listed else 0.0}


def teacher_per_aspect(data_dir: Path, dataset: str, split: str, examples) -> dict:
    """The dataset's reasons read as they were written: one per (tweet, aspect), whose opening
    "Sentiment: X" is the teacher's verdict on that aspect; accuracy against the gold label."""
    from training.data import _records_for, _stem

    recs = json.loads((Path(data_dir) / "rationales" / dataset / f"{split}.json").read_text())
    by_image: dict[str, list[dict]] = {}
    for r in recs:
        by_image.setdefault(r["ImageID"], []).append(r)
    total = correct = found = 0
    for e in examples:
        records = _records_for({"words": e.words}, by_image.get(_stem(e.image_id), []))
        for s, t, p in e.spans:
            total += 1
            term = " ".join(e.words[s:t])
            rec = next((r for r in records if " ".join(r["target"].split()) == term), None)
            m = _TEACHER_LABEL.match(rec["reason"]) if rec else None
            if m:
                found += 1
                correct += m.group(1).lower() == SENTIMENT[p]
    return {"aspects": total, "with_reason": found,
            "accuracy": round(100.0 * correct / total, 2) if total else 0.0}


def run(s: RationaleQualitySettings, engine=None) -> dict:
    from training.data import load_split

    source = "reasons" if s.reasons else "none"
    examples = load_split(s.data_dir, s.dataset, s.split, source, use_description=False,
                          rationale_file=s.rationale_file, limit=s.limit)
    report: dict = {"dataset": s.dataset, "split": s.split}
    if s.reasons:
        report["source"] = "dataset reasons (per gold aspect, joined as load_split does)"
        rationales = [e.rationale for e in examples]
        report["teacher_per_aspect"] = teacher_per_aspect(s.data_dir, s.dataset, s.split, examples)
    elif s.rationale_file:
        report["source"] = str(s.rationale_file)
        rationales = [e.rationale for e in examples]
        versions = {json.loads(line).get("prompt_version") for line in s.rationale_file.read_text().splitlines()
                    if line.strip()}
        if len(versions) == 1 and (version := versions.pop()) in TEMPLATES:
            report["names_answered"] = names_answered([" ".join(e.words) for e in examples], rationales, version)
    else:
        rationales, timing = generate(s, examples, engine)
        report.update(source="generated", model=s.model, prompt_version=s.prompt_version, **timing)
        report["names_answered"] = names_answered([" ".join(e.words) for e in examples], rationales, s.prompt_version)
    report.update(score(gold_items(examples, rationales)))
    return report


def generate(s: RationaleQualitySettings, examples, engine=None) -> tuple[list[str], dict]:
    from lrsa.rationale.engine import RationaleEngine, RationaleRequest

    t_load = time.perf_counter()
    engine = engine or RationaleEngine(s)
    load_s = time.perf_counter() - t_load
    texts = [" ".join(e.words) for e in examples]
    out: list[str] = []
    t0 = time.perf_counter()
    for i in range(0, len(texts), s.chunk_size):
        out += [r.text for r in engine.generate([RationaleRequest(t) for t in texts[i:i + s.chunk_size]])]
        spent = time.perf_counter() - t0
        log.info("%d/%d posts, %.0f s, ETA %.0f s", len(out), len(texts), spent,
                 spent / len(out) * (len(texts) - len(out)))
    seconds = time.perf_counter() - t0
    if s.out:
        s.out.parent.mkdir(parents=True, exist_ok=True)
        with s.out.open("w") as f:
            for e, t, r in zip(examples, texts, out):
                f.write(json.dumps({"image_id": e.image_id, "text": t, "rationale": r, "model": s.model,
                                    "prompt_version": s.prompt_version}) + "\n")
    tokens = engine.totals.new_tokens
    return out, {"seconds": round(seconds, 1), "load_s": round(load_s, 1), "new_tokens": tokens,
                 "tok_s": round(tokens / seconds, 1) if seconds else 0.0,
                 "tokens_per_post": round(tokens / max(1, engine.totals.generated), 1)}


def register(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("rationale-quality",
                         help="share of gold aspects whose sentiment the rationale states correctly",
                         description="Rationales of a MABSA split (generated with a prompt version, read from "
                                     "--rationale-file, or the dataset's --reasons) read by lrsa.rationale.verdicts "
                                     "against the gold aspects: accuracy, mention share, per-class recall, "
                                     "template share. Prints JSON.")
    add_settings_flags(p, RationaleQualitySettings)
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    print(json.dumps(run(settings_from_args(RationaleQualitySettings, args)), indent=1))
    return 0

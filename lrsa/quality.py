"""Quality of the worker's output against labelled posts: JMASA, MATE and MASC on character spans.

Gold (JSONL, one post per line): `{"id", "text", "aspects": [{"term", "start", "end",
"sentiment"}], "created_at"?, "lang"?, "meta"?}` with `text[start:end] == term` and sentiment
positive / neutral / negative. Results: the worker's result records (`post_id`, `aspects` with
`term`, `start`, `end`, `sentiment`, `confidence`), as dicts or `lrsa.schemas.Result`.

Rules (scores are percentages, micro over all gold posts):
- JMASA: a predicted aspect is correct when its (start, end) AND sentiment exactly equal a gold
  aspect's of the same post. MATE: the same on (start, end) alone. The term text is not compared
  (the offsets say which characters were meant).
- MASC: over the correctly extracted spans (MATE hits), the predicted sentiment against the gold
  one: accuracy, per-class recall / precision / F1 (negative first) and macro-F1 over the three
  classes (a class absent from both gold and predictions scores 0, as in training/metrics.py).
- A gold post without a result is scored as if it had no aspects (its gold aspects are missed)
  and counted in `posts.missing`. Several result records for one post (at-least-once delivery
  writes duplicates): the first one read is scored, the others counted. Results for posts not in
  the gold are counted and ignored. The same span twice within one result counts once (the
  first one's sentiment), and is counted in `aspects.duplicate_spans`.

Core module: pydantic only, no Ray, Kafka or Triton.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lrsa.schemas import Sentiment

# MASC classes, in report order: negative first (the rarest class, and the one most often missed).
CLASSES: tuple[str, ...] = ("negative", "neutral", "positive")
MAX_LISTED_IDS = 20  # ids listed per kind of problem in a report (the counts are complete)


class GoldAspect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    term: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    sentiment: Sentiment


class GoldPost(BaseModel):
    """One labelled post; its aspects' offsets must point at their terms."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    text: str
    aspects: list[GoldAspect] = Field(default_factory=list)
    created_at: str | None = None
    lang: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _offsets_point_at_terms(self) -> GoldPost:
        for a in self.aspects:
            if not (0 <= a.start < a.end <= len(self.text)) or self.text[a.start:a.end] != a.term:
                raise ValueError(f"post {self.id!r}: aspect {a.term!r} [{a.start}:{a.end}] does not match "
                                 f"the text there ({self.text[a.start:a.end]!r})")
        return self

    def post(self) -> dict[str, Any]:
        """The input post the worker reads: the gold without its labels."""
        out = {"id": self.id, "text": self.text}
        out.update({k: v for k, v in (("lang", self.lang), ("created_at", self.created_at)) if v is not None})
        if self.meta:
            out["meta"] = self.meta
        return out


def load_gold(path: str | Path) -> list[GoldPost]:
    """Gold posts from a JSONL file (blank lines skipped); ids must be unique."""
    posts = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    posts.append(GoldPost.model_validate_json(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{number}: {e}") from None
    _check_unique(posts)
    return posts


def write_gold(path: str | Path, posts: Iterable[GoldPost | Mapping[str, Any]]) -> int:
    """Write gold posts as JSONL; returns how many."""
    n = 0
    with open(path, "w") as f:
        for post in posts:
            p = post if isinstance(post, GoldPost) else GoldPost.model_validate(post)
            f.write(p.model_dump_json(exclude_none=True) + "\n")
            n += 1
    return n


def _check_unique(posts: Sequence[GoldPost]) -> None:
    seen: set[str] = set()
    for p in posts:
        if p.id in seen:
            raise ValueError(f"gold post id {p.id!r} appears twice")
        seen.add(p.id)


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * f}


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


def _predicted_pairs(record: Any) -> tuple[dict[tuple[int, int], str], int]:
    """(start, end) -> sentiment of one result's aspects (first wins), and how many repeated a span."""
    pairs: dict[tuple[int, int], str] = {}
    repeated = 0
    for a in _field(record, "aspects") or []:
        span = (int(_field(a, "start")), int(_field(a, "end")))
        sentiment = str(_field(a, "sentiment")).lower()
        if sentiment not in CLASSES:
            raise ValueError(f"result for {_field(record, 'post_id')!r}: unknown sentiment {sentiment!r}")
        if span in pairs:
            repeated += 1
        else:
            pairs[span] = sentiment
    return pairs, repeated


def score(gold: Sequence[GoldPost | Mapping[str, Any]], results: Iterable[Any]) -> dict[str, Any]:
    """JMASA / MATE / MASC of `results` against `gold`, with the counts behind them (see module doc)."""
    posts = [g if isinstance(g, GoldPost) else GoldPost.model_validate(g) for g in gold]
    _check_unique(posts)
    gold_ids = {p.id for p in posts}
    first: dict[str, Any] = {}
    duplicate_records, unknown = 0, []
    for record in results:
        post_id = str(_field(record, "post_id"))
        if post_id not in gold_ids:
            unknown.append(post_id)
        elif post_id in first:
            duplicate_records += 1
        else:
            first[post_id] = record

    n_gold = n_pred = jmasa_hits = mate_hits = duplicate_spans = 0
    confusion = {g: {p: 0 for p in CLASSES} for g in CLASSES}  # gold -> predicted, on matched spans
    missing = []
    for post in posts:
        gold_pairs = {(a.start, a.end): a.sentiment for a in post.aspects}
        n_gold += len(gold_pairs)
        if post.id not in first:
            missing.append(post.id)
            continue
        pred_pairs, repeated = _predicted_pairs(first[post.id])
        duplicate_spans += repeated
        n_pred += len(pred_pairs)
        for span, sentiment in pred_pairs.items():
            if span in gold_pairs:
                mate_hits += 1
                jmasa_hits += gold_pairs[span] == sentiment
                confusion[gold_pairs[span]][sentiment] += 1

    per_class = {}
    for c in CLASSES:
        tp = confusion[c][c]
        scores = prf(tp, sum(confusion[g][c] for g in CLASSES), sum(confusion[c].values()))
        per_class[c] = {**scores, "support": sum(confusion[c].values())}
    return {
        "jmasa": prf(jmasa_hits, n_pred, n_gold),
        "mate": prf(mate_hits, n_pred, n_gold),
        "masc": {
            "accuracy": 100 * jmasa_hits / mate_hits if mate_hits else 0.0,
            "macro_f1": sum(s["f1"] for s in per_class.values()) / len(CLASSES),
            "negative_recall": per_class["negative"]["recall"],
            "per_class": per_class,
            "spans": mate_hits,
        },
        "posts": {"gold": len(posts), "scored": len(first), "missing": len(missing),
                  "duplicate_records": duplicate_records, "unknown": len(unknown),
                  "missing_ids": missing[:MAX_LISTED_IDS], "unknown_ids": unknown[:MAX_LISTED_IDS]},
        "aspects": {"gold": n_gold, "predicted": n_pred, "span_matches": mate_hits,
                    "pair_matches": jmasa_hits, "duplicate_spans": duplicate_spans},
    }


def summary_line(report: Mapping[str, Any]) -> str:
    """One line with the headline figures of a `score` report."""
    j, m, s, p = report["jmasa"], report["mate"], report["masc"], report["posts"]
    return (f"JMASA P/R/F1 {j['precision']:.1f}/{j['recall']:.1f}/{j['f1']:.1f}  "
            f"MATE F1 {m['f1']:.1f}  MASC acc {s['accuracy']:.1f} macro-F1 {s['macro_f1']:.1f} "
            f"neg-recall {s['negative_recall']:.1f} (on {s['spans']} spans)  "
            f"posts {p['scored']}/{p['gold']} (missing {p['missing']}, duplicates {p['duplicate_records']}, "
            f"unknown {p['unknown']})")

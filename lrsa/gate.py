"""Confidence-gated rationales: which posts the costly LLM rationale is worth asking for.

The fused SLM first scores a post from its text alone (no rationale). Its **certainty** is

- with aspects found: the smallest confidence among them (calibrated when the checkpoint has a
  calibration, `lrsa.calibration`: then it estimates the chance that the weakest aspect is right,
  span AND sentiment). One doubtful aspect is enough to ask for a rationale, since a rationale
  re-scores the whole post.
- with no aspect found: the tagger's certainty that there is none, the smallest probability of
  "O" (outside any aspect) over the post's words, i.e. 1 - the largest probability that some word
  starts or continues an aspect. A post where the tagger hesitated on a word (an aspect just
  below the decoding threshold) is uncertain and goes to the LLM, whose rationale may tip it; a
  post whose every word is confidently "O" (stream chatter naming nothing) stays text only.
  Treating every empty post as certain would keep the LLM off exactly the posts where the text
  alone missed an aspect (on Twitter-2015/2017 every post has at least one); treating every empty
  post as uncertain would send most of a real stream. Where that probability is unknown (a scorer
  that does not report it) an empty post counts as certain.

The gate sends a post to the rationale stage when its certainty is **below** the threshold:
threshold 0 sends none, a threshold above every certainty sends all (`sends`).

`combine` and `curve` are the offline side: given each post's text-only and with-rationale
predictions and its certainty, the predictions the gated pipeline would output at a threshold,
and the quality against the share of posts sent (`lrsa bench gate-curve`).

Core module: numpy and pydantic only (no Ray, Kafka or Triton).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lrsa.labels import LABEL_TO_ID
from lrsa.schemas import Aspect

_O = LABEL_TO_ID["O"]


def _confidence(aspect: Aspect | Mapping[str, Any]) -> float:
    return float(aspect["confidence"] if isinstance(aspect, Mapping) else aspect.confidence)


def post_certainty(aspects: Sequence[Aspect | Mapping[str, Any]] | None,
                   no_aspect_certainty: float | None = None) -> float:
    """How sure the text-only scoring is about a post, in [0, 1] (see the module doc)."""
    if aspects:
        return min(_confidence(a) for a in aspects)
    if no_aspect_certainty is None:
        return 1.0
    return float(min(max(no_aspect_certainty, 0.0), 1.0))


def no_aspect_certainty(word_probs: np.ndarray) -> float:
    """The smallest P(O) over the words of a post, from tag probabilities [num_words, NUM_LABELS]
    (`lrsa.predict.word_probabilities`); 1.0 for a post without words."""
    probs = np.asarray(word_probs)
    if probs.size == 0:
        return 1.0
    return float(probs[:, _O].min())


def sends(certainty: float, threshold: float | None) -> bool:
    """True: the post goes to the rationale stage. No gate (None): every post does."""
    return threshold is None or certainty < threshold


def combine(text_only: Sequence[Any], with_rationale: Sequence[Any], certainties: Sequence[float],
            threshold: float | None) -> tuple[list[Any], list[bool]]:
    """Per post, the prediction the gated pipeline outputs at `threshold` (the with-rationale one
    for posts sent, the text-only one otherwise), and whether it was sent."""
    if not (len(text_only) == len(with_rationale) == len(certainties)):
        raise ValueError(f"{len(text_only)} text-only predictions, {len(with_rationale)} with rationale, "
                         f"{len(certainties)} certainties: one of each per post")
    sent = [sends(c, threshold) for c in certainties]
    return [w if s else t for t, w, s in zip(text_only, with_rationale, sent)], sent


def curve(gold: Sequence[Any], post_ids: Sequence[str], text_only: Sequence[Sequence[Any]],
          with_rationale: Sequence[Sequence[Any]], certainties: Sequence[float],
          thresholds: Iterable[float | None]) -> list[dict[str, Any]]:
    """One row per threshold (None: no gate, every post sent): share of posts sent, JMASA F1, MATE
    F1, MASC accuracy and macro-F1 of the combined predictions against `gold` (lrsa.quality).
    Predictions are each post's aspects (Aspect or dicts with start, end, sentiment)."""
    from lrsa.quality import score

    rows = []
    for t in thresholds:
        chosen, sent = combine(text_only, with_rationale, certainties, t)
        results = [{"post_id": pid, "aspects": [_as_dict(a) for a in aspects]}
                   for pid, aspects in zip(post_ids, chosen)]
        report = score(gold, results)
        rows.append({"threshold": t, "sent": sum(sent), "posts": len(sent),
                     "share_sent": sum(sent) / len(sent) if sent else 0.0,
                     "jmasa_f1": report["jmasa"]["f1"], "jmasa_precision": report["jmasa"]["precision"],
                     "jmasa_recall": report["jmasa"]["recall"], "mate_f1": report["mate"]["f1"],
                     "masc_accuracy": report["masc"]["accuracy"], "masc_macro_f1": report["masc"]["macro_f1"]})
    return rows


def random_baseline(gold: Sequence[Any], post_ids: Sequence[str], text_only: Sequence[Sequence[Any]],
                    with_rationale: Sequence[Sequence[Any]], sent: int, draws: int = 20,
                    seed: int = 0) -> float:
    """Mean JMASA F1 when `sent` posts drawn at random (not by certainty) get their rationale:
    what the gate's ordering has to beat at the same share sent."""
    from lrsa.quality import score

    rng = np.random.default_rng(seed)
    n = len(post_ids)
    f1 = []
    for _ in range(draws if 0 < sent < n else 1):
        chosen = set(rng.choice(n, size=sent, replace=False).tolist())
        results = [{"post_id": pid, "aspects": [_as_dict(a) for a in (with_rationale if i in chosen else text_only)[i]]}
                   for i, pid in enumerate(post_ids)]
        f1.append(score(gold, results)["jmasa"]["f1"])
    return float(np.mean(f1))


def _as_dict(aspect: Any) -> Mapping[str, Any]:
    return aspect if isinstance(aspect, Mapping) else aspect.model_dump()

"""MABSA metrics as the literature computes them (VLP-MABSA, DQPSA, ...).

- JMASA: a predicted (span, sentiment) counts as correct only if span AND sentiment exactly
  match a gold pair of the same post; micro precision / recall / F1 over all posts.
- MATE: the same on spans alone.
- MASC: over the GOLD aspects, the predicted sentiment of each one: accuracy and macro-F1 over
  the three classes, and each class's recall (`recall_neg` first: the one brand teams page on).
  Targeted-sentiment data (one labelled target per tweet) is scored the same way.
Spans are (start, end) word indices, end exclusive. Scores are percentages.
"""

from __future__ import annotations

from typing import Sequence

SENTIMENTS = ("POS", "NEU", "NEG")
Pair = tuple[int, int, str]


def prf(num_correct: int, num_pred: int, num_gold: int) -> dict[str, float]:
    p = num_correct / num_pred if num_pred else 0.0
    r = num_correct / num_gold if num_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * f}


def jmasa(gold: Sequence[Sequence[Pair]], pred: Sequence[Sequence[Pair]]) -> dict[str, float]:
    correct = sum(len(set(g) & set(p)) for g, p in zip(gold, pred, strict=True))
    return prf(correct, sum(len(set(p)) for p in pred), sum(len(set(g)) for g in gold))


def mate(gold: Sequence[Sequence[Pair]], pred: Sequence[Sequence[Pair]]) -> dict[str, float]:
    def spans(pairs: Sequence[Pair]) -> set[tuple[int, int]]:
        return {(s, e) for s, e, _ in pairs}

    correct = sum(len(spans(g) & spans(p)) for g, p in zip(gold, pred, strict=True))
    return prf(correct, sum(len(spans(p)) for p in pred), sum(len(spans(g)) for g in gold))


def masc(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """Sentiment of gold aspects: accuracy, macro-F1 (classes absent from both count 0) and
    each class's recall (0 for a class with no gold aspect)."""
    if len(gold) != len(pred):
        raise ValueError("one predicted sentiment per gold aspect is needed")
    out = {"accuracy": 100 * sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else 0.0}
    f1s, recalls = [], {}
    for c in SENTIMENTS:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        scores = prf(tp, sum(p == c for p in pred), sum(g == c for g in gold))
        f1s.append(scores["f1"])
        recalls[f"recall_{c.lower()}"] = scores["recall"]
    out["macro_f1"] = sum(f1s) / len(f1s)
    return {**out, **{k: recalls[k] for k in ("recall_neg", "recall_neu", "recall_pos")}}


def mabsa_metrics(gold: Sequence[Sequence[Pair]], pred: Sequence[Sequence[Pair]],
                  gold_aspect_sentiments: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """All three tasks. `gold_aspect_sentiments[i][j]` is the model's sentiment for gold[i][j]."""
    flat_gold = [s for pairs in gold for _, _, s in pairs]
    flat_pred = [s for sents in gold_aspect_sentiments for s in sents]
    return {"jmasa": jmasa(gold, pred), "mate": mate(gold, pred), "masc": masc(flat_gold, flat_pred)}


def averaged(results: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The mean of several datasets' `mabsa_metrics`, score by score (macro over datasets)."""
    return {task: {name: sum(r[task][name] for r in results) / len(results) for name in results[0][task]}
            for task in results[0]}

"""The tag scheme of the fused SLM: sentiment-aware BIO, one tag per word.

`B-POS I-POS` marks a positive aspect of two words, `O` a word outside any aspect. JMASA (aspect
spans with their sentiment) is thus one token-classification pass. Spans are word-index ranges
`(start, end)` with `end` exclusive, as in the datasets. `decode_spans` turns the tagger's
probabilities into spans; `tags_to_spans` reads a given tag sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SENTIMENTS = ("POS", "NEU", "NEG")
ROLES = ("O", "B", "I")
LABELS = ("O",) + tuple(f"{bio}-{s}" for s in SENTIMENTS for bio in ROLES[1:])
NUM_LABELS = len(LABELS)
LABEL_TO_ID = {label: i for i, label in enumerate(LABELS)}
# each sentiment's B and I columns, in SENTIMENTS order
_B = [LABEL_TO_ID[f"B-{s}"] for s in SENTIMENTS]
_I = [LABEL_TO_ID[f"I-{s}"] for s in SENTIMENTS]
IGNORE_INDEX = -100  # label of sub-word pieces after a word's first one, and of padding

SENTIMENT_NAMES = {"POS": "positive", "NEU": "neutral", "NEG": "negative"}
SENTIMENT_CODES = {name: code for code, name in SENTIMENT_NAMES.items()}


@dataclass(frozen=True)
class Span:
    start: int  # first word
    end: int  # one past the last word
    sentiment: str  # POS / NEU / NEG
    confidence: float = 1.0


def spans_to_tags(num_words: int, spans: Sequence[tuple[int, int, str]]) -> list[int]:
    """Tag ids for `num_words` words from (start, end, sentiment) spans; later spans win overlaps."""
    tags = [LABEL_TO_ID["O"]] * num_words
    for start, end, sentiment in spans:
        for i in range(start, min(end, num_words)):
            tags[i] = LABEL_TO_ID[f"{'B' if i == start else 'I'}-{sentiment}"]
    return tags


def tags_to_spans(tags: Sequence[int], probs: np.ndarray | None = None) -> list[Span]:
    """Decode tag ids into spans.

    A span starts at a B tag (or at an I tag that follows O or another sentiment, the usual
    lenient BIO repair) and extends over I tags of the same sentiment. Its confidence is the
    mean probability of the chosen tags over its words, when `probs` [num_words, NUM_LABELS]
    is given.
    """
    spans: list[Span] = []
    start, sentiment = None, None

    def close(end: int) -> None:
        conf = 1.0 if probs is None else float(np.mean([probs[i, tags[i]] for i in range(start, end)]))
        spans.append(Span(start, end, sentiment, conf))

    for i, tag in enumerate(tags):
        label = LABELS[tag]
        if label == "O":
            if start is not None:
                close(i)
            start = None
            continue
        bio, sent = label.split("-")
        if bio == "B" or sent != sentiment or start is None:
            if start is not None:
                close(i)
            start, sentiment = i, sent
    if start is not None:
        close(len(tags))
    return spans


def span_sentiment(probs: np.ndarray, start: int, end: int) -> tuple[str, float]:
    """Sentiment of a given span (e.g. a gold aspect, for MASC) from tag probabilities.

    Sums each sentiment's B and I probabilities per word, averages over the span's words and
    takes the best: the tagger's own opinion about that span's sentiment.
    """
    return words_sentiment(probs, range(start, end))


def words_sentiment(probs: np.ndarray, words: Sequence[int]) -> tuple[str, float]:
    """`span_sentiment` over any set of words, e.g. every mention of one target."""
    words = list(words)
    per_sentiment = (probs[words][:, _B] + probs[words][:, _I]).mean(axis=0)
    best = int(per_sentiment.argmax())
    return SENTIMENTS[best], float(per_sentiment[best] / max(per_sentiment.sum(), 1e-9))

_ROLE_B, _ROLE_I = 1, 2  # role 0 is O
# role transitions allowed by BIO: everything but O -> I (and a post cannot open with I)
_ALLOWED = np.array([[True, True, False], [True, True, True], [True, True, True]])


def decode_spans(probs: np.ndarray) -> list[Span]:
    """Aspect spans with their sentiments from tag probabilities [num_words, NUM_LABELS].

    Span first, sentiment second. Each word's probability is summed per role (O, B, I) over the
    three sentiments, the most probable role sequence in which no I follows an O is found
    (Viterbi), and each span takes the sentiment of `span_sentiment`. Taking each word's likeliest
    of the seven tags instead breaks an aspect whose words lean to different sentiments into two
    wrong spans, and lets a stray I open one: decoding this way adds 2-6 JMASA F1 on the dev
    splits (docs/model.md). A span's confidence is the mean probability of its roles times the
    share of its sentiment.
    """
    if len(probs) == 0:
        return []
    roles = np.stack([probs[:, LABEL_TO_ID["O"]], probs[:, _B].sum(axis=1), probs[:, _I].sum(axis=1)], axis=1)
    path = _viterbi(np.log(np.clip(roles, 1e-12, 1.0)))
    spans = []
    for start, end in _role_spans(path):
        sentiment, share = span_sentiment(probs, start, end)
        role_prob = float(np.mean([roles[i, path[i]] for i in range(start, end)]))
        spans.append(Span(start, end, sentiment, role_prob * share))
    return spans


def _viterbi(log_roles: np.ndarray) -> list[int]:
    """Best role sequence under `_ALLOWED` from per-word role log-probabilities [n, 3]."""
    score = log_roles[0] + np.where([True, True, False], 0.0, -np.inf)
    back = []
    for row in log_roles[1:]:
        cand = np.where(_ALLOWED, score[:, None], -np.inf) + row[None, :]
        back.append(cand.argmax(axis=0))
        score = cand.max(axis=0)
    path = [int(score.argmax())]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    return path[::-1]


def _role_spans(path: Sequence[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, role in enumerate(path):
        if start is not None and role != _ROLE_I:
            spans.append((start, i))
            start = None
        if role == _ROLE_B:
            start = i
    if start is not None:
        spans.append((start, len(path)))
    return spans

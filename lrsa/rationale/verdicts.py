"""What a rationale says about each aspect, and how often it is right (the rationale's own quality).

A deterministic reading of a free-text rationale, no model involved:

- `verdict(rationale, term)`: the sentiment the rationale attributes to an aspect term:
  "positive", "negative", "neutral", "unclear" (the term is named but no sentiment word goes
  with it) or "none" (the term is not named).
- `score(items)`: over gold aspects, the share whose sentiment the rationale states correctly
  (accuracy), the share it names at all (mention share), per-class recall, and the template
  share of the rationales (the share that open with the most common first five words).

Reading rules (kept simple so that a score is easy to audit):

1. The term is found case-insensitively with flexible separators: its alphanumeric pieces
   (camelCase split: "SamHunt" = "sam", "hunt") in order, separated by any run of
   non-alphanumeric characters or none, not inside a longer word. "# Tribeca" matches
   "#Tribeca" and "Tribeca"; "Ryanair" matches "Ryanair's".
2. The text is cut into segments: lines, sentences (. ! ? followed by a space), " | " (how the
   dataset's per-aspect reasons are joined), ";" and the clause words but / however / while /
   whereas / although / though.
3. Sentiment words (`LEXICON`: positive / negative / neutral and close synonyms such as
   "angry", "happy", "favourable", "indifferent") count unless negated: "not", "no", "n't",
   "never", "neither", "nor", "without" up to five words before, or an earlier negated
   sentiment word joined by "or" / "nor" ("not negative or positive").
4. In the segment that names the term: if a preposition such as "about", "towards", "for",
   "at" stands right before the term ("feels negative about Ryanair"), the nearest sentiment
   word before it decides; otherwise the nearest one after it ("Ryanair: negative - ...",
   "Ryanair is awful"), else the nearest one before it ("... about X, Y and Z").
5. A segment of the form "Sentiment: <word>" (the dataset's reasons open so) is the verdict
   for every term named in its block (the text between " | "), before rule 4.
6. Several mentions: the first that yields a sentiment decides.

Core module: standard library only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CLASSES: tuple[str, ...] = ("negative", "neutral", "positive")  # report order, as lrsa.quality
NONE, UNCLEAR = "none", "unclear"

LEXICON: dict[str, str] = {}
for _label, _words in {
    "positive": "positive positively positivity favourable favorable favourably favorably happy happiness "
                "glad pleased delighted excited excitement enthusiastic proud admiration admire admires "
                "admiring praise praises praising supportive supports approval approves approving "
                "optimistic grateful thankful love loves loving likes affection joy joyful "
                "hopeful impressed appreciative appreciation celebratory good great excellent amazing wonderful "
                "awesome fantastic",
    "negative": "negative negatively negativity unfavourable unfavorable unhappy angry anger furious "
                "frustrated frustration annoyed annoyance upset disappointed disappointment sad sadness "
                "critical criticism criticises criticizes criticizing disapproval disapproves dislike "
                "dislikes hate hates hatred hostile contempt disgust disgusted outraged outrage "
                "pessimistic worried concerned fear afraid bitter sarcastic mocking bad awful terrible "
                "horrible worst poor",
    "neutral": "neutral neutrally neutrality indifferent indifference objective factual impartial "
               "informative informational unbiased",
}.items():
    for _w in _words.split():
        LEXICON[_w] = _label

NEGATION_WINDOW = 5  # words before a sentiment word in which a negator cancels it
_NEGATORS = {"not", "no", "never", "neither", "nor", "without", "n't", "nothing", "none"}
_PREPOSITIONS = ("about", "towards", "toward", "for", "at", "with", "regarding", "on", "of", "over", "by", "against")
_WORD = re.compile(r"[A-Za-z]+(?:['’][a-z]+)?")
_SEGMENT_SPLIT = re.compile(
    r"\n+|\s\|\s|(?<=[.!?])\s+|;\s*|,?\s+(?=(?:but|however|while|whereas|although|though)\b)", re.IGNORECASE)
_HEADER = re.compile(r"\W*sentiment\s*[:=-]\s*(?:is\s+)?([a-z]+)", re.IGNORECASE)
_PREP_BEFORE = re.compile(r"\b(?:" + "|".join(_PREPOSITIONS) + r")\s+(?:the\s+|a\s+|an\s+)?$", re.IGNORECASE)


def term_pattern(term: str) -> re.Pattern[str] | None:
    """The term's alphanumeric pieces in order, any non-alphanumeric separators (or none) between
    them, not inside a longer word; None for a term without letters or digits."""
    pieces = []
    for chunk in re.findall(r"[A-Za-z0-9]+", term):
        pieces += re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", chunk) or [chunk]
    if not pieces:
        return None
    body = r"[\W_]*".join(re.escape(p) for p in pieces)
    return re.compile(r"(?<![A-Za-z0-9])" + body + r"(?![A-Za-z0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class _Segment:
    start: int
    end: int
    block: int


def _segments(text: str) -> list[_Segment]:
    out, block, pos = [], 0, 0
    for m in _SEGMENT_SPLIT.finditer(text):
        out.append(_Segment(pos, m.start(), block))
        if "|" in m.group():
            block += 1
        pos = m.end()
    out.append(_Segment(pos, len(text), block))
    return [s for s in out if s.end > s.start]


def _sentiment_words(text: str, seg: _Segment) -> list[tuple[int, int, str]]:
    """(start, end, label) of the segment's sentiment words that are not negated."""
    words = [(m.start(), m.end(), m.group().lower().replace("\u2019", "'"))
             for m in _WORD.finditer(text, seg.start, seg.end)]
    out, negated_prev = [], None
    for i, (s, e, w) in enumerate(words):
        label = LEXICON.get(w)
        if label is None:
            continue
        before = [x[2] for x in words[max(0, i - NEGATION_WINDOW): i]]
        negated = any(b in _NEGATORS or b.endswith("n't") for b in before) or \
            (bool(before) and before[-1] in ("or", "nor") and negated_prev is True)
        negated_prev = negated
        if not negated:
            out.append((s, e, label))
    return out


def _header(text: str, seg: _Segment) -> str | None:
    m = _HEADER.match(text, seg.start, seg.end)
    return LEXICON.get(m.group(1).lower()) if m else None


def verdict(rationale: str, term: str) -> str:
    """The sentiment `rationale` attributes to `term`: a CLASSES label, "unclear" or "none"."""
    pattern = term_pattern(term)
    if not rationale or pattern is None:
        return NONE
    segments = _segments(rationale)
    headers: dict[int, str] = {}
    for seg in segments:
        if seg.block not in headers and (h := _header(rationale, seg)):
            headers[seg.block] = h
    found = False
    for m in pattern.finditer(rationale):
        seg = next((s for s in segments if s.start <= m.start() < s.end), None)
        if seg is None:
            continue
        found = True
        if seg.block in headers:
            return headers[seg.block]
        words = _sentiment_words(rationale, seg)
        before = [w for w in words if w[1] <= m.start()]
        after = [w for w in words if w[0] >= m.end()]
        if before and _PREP_BEFORE.search(rationale, seg.start, m.start()):
            return before[-1][2]
        if after:
            return after[0][2]
        if before:
            return before[-1][2]
    return UNCLEAR if found else NONE


def opening(rationale: str, n: int = 5) -> str:
    """The first n words, lower-cased, without punctuation (what the template share compares)."""
    return " ".join(re.findall(r"[a-z0-9']+", rationale.lower())[:n])


@dataclass(frozen=True)
class Item:
    """One post: its rationale and its gold aspects as (term, sentiment)."""

    rationale: str | None
    aspects: Sequence[tuple[str, str]]


def score(items: Iterable[Item]) -> dict:
    """Accuracy over gold aspects (a missing rationale counts as naming none), mention share,
    accuracy over the named aspects, per-class recall and their mean, the verdict counts, and the
    template share."""
    items = list(items)
    total = correct = mentioned = 0
    per_class = {c: [0, 0] for c in CLASSES}  # gold class -> [correct, total]
    verdicts: Counter[str] = Counter()
    confusion: dict[str, Counter[str]] = {c: Counter() for c in CLASSES}
    for it in items:
        for term, gold in it.aspects:
            v = verdict(it.rationale or "", term)
            total += 1
            verdicts[v] += 1
            mentioned += v != NONE
            correct += v == gold
            if gold in per_class:
                per_class[gold][0] += v == gold
                per_class[gold][1] += 1
                confusion[gold][v] += 1
    openings = Counter(opening(it.rationale) for it in items if it.rationale)
    common, common_n = openings.most_common(1)[0] if openings else ("", 0)
    with_text = sum(bool(it.rationale) for it in items)

    def pct(a: int, b: int) -> float:
        return round(100.0 * a / b, 2) if b else 0.0

    return {
        "posts": len(items),
        "posts_with_rationale": with_text,
        "aspects": total,
        "accuracy": pct(correct, total),
        "mention_share": pct(mentioned, total),
        "accuracy_on_mentioned": pct(correct, mentioned),
        "recall": {c: pct(*per_class[c]) for c in CLASSES},
        # mean of the per-class recalls: what a rationale that says "neutral" about everything
        # (63% accuracy on Twitter-2015 dev) cannot hide
        "macro_recall": round(sum(pct(*per_class[c]) for c in CLASSES) / len(CLASSES), 2),
        "gold": {c: per_class[c][1] for c in CLASSES},
        "verdicts": {k: verdicts.get(k, 0) for k in (*CLASSES, UNCLEAR, NONE)},
        "confusion": {c: dict(confusion[c]) for c in CLASSES},
        "template_share": pct(common_n, with_text),
        "template_opening": common,
        "distinct_openings": len(openings),
    }

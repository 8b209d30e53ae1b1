"""MABSA benchmark splits as gold posts for `lrsa.quality`: the labelled input of the live bench.

A tweet's words become the post text joined by single spaces; each aspect's word span becomes the
character offsets of its words in that text, and POS/NEU/NEG become positive/neutral/negative.
"""

from __future__ import annotations

from pathlib import Path

from lrsa.quality import GoldPost

SENTIMENTS = {"POS": "positive", "NEU": "neutral", "NEG": "negative"}


def example_to_gold(words: list[str], spans: list[tuple[int, int, str]], post_id: str,
                    meta: dict | None = None) -> GoldPost:
    """One tweet (words, (first word, end word exclusive, POS/NEU/NEG) spans) as a gold post."""
    starts, offset = [], 0
    for word in words:
        starts.append(offset)
        offset += len(word) + 1
    text = " ".join(words)
    aspects = []
    for first, end, polarity in spans:
        if not 0 <= first < end <= len(words):
            raise ValueError(f"post {post_id!r}: word span [{first}:{end}] outside its {len(words)} words")
        start, stop = starts[first], starts[end - 1] + len(words[end - 1])
        aspects.append({"term": text[start:stop], "start": start, "end": stop,
                        "sentiment": SENTIMENTS[polarity]})
    return GoldPost(id=post_id, text=text, aspects=aspects, meta=meta or {})


def split_to_gold(data_dir: str | Path, dataset: str, split: str, limit: int | None = None) -> list[GoldPost]:
    """A MABSA split (training.data.load_split) as gold posts, ids `<dataset>-<split>-<index>`."""
    from training.data import load_split

    examples = load_split(data_dir, dataset, split, rationale_source="none", use_description=False,
                          limit=limit)
    return [example_to_gold(ex.words, ex.spans, f"{dataset}-{split}-{i:05d}",
                            {"dataset": dataset, "split": split, "image_id": ex.image_id})
            for i, ex in enumerate(examples)]

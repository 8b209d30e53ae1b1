"""Targeted-sentiment tweets (Dong et al. 2014) as extra sentiment supervision.

File format (`../shared/data/tsa/twitter-dong2014/train.raw`): three lines per tweet: the
lower-cased, tokenised sentence with the target replaced by `$T$` (once or several times), the
target, and the polarity (-1 / 0 / 1). Each `$T$` becomes the target's words, and every mention
becomes one span with the tweet's polarity.

These tweets label one target each, not every aspect of the tweet, so an `Example` made from one
is `partial`: only its target words carry tags in training (B-/I- with the polarity), every other
word is ignored by the loss (it may well be an unlabelled aspect). Sentiment is thus learnt at the
target's span by the same tag head the pipeline serves, and extraction keeps learning from the
fully labelled MABSA posts only.

The test split is held out; the dev split is cut off `train.raw` here: a tenth of its tweets
(`DEV_FRACTION`: 625 of 6,248) drawn with `random.Random(DEV_SEED)`, the same on every
machine. `load_tsa("train")` never returns them.
"""

from __future__ import annotations

import random
from pathlib import Path

from training.data import Example

DEV_SEED = 2014
DEV_FRACTION = 0.1
POLARITY = {"-1": "NEG", "0": "NEU", "1": "POS"}
TARGET = "$T$"
DEFAULT_TSA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tsa" / "twitter-dong2014"


class TsaFormatError(ValueError):
    """A targeted-sentiment file that does not follow the three-line format."""


def parse_tsa(text: str, source: str = "<text>") -> list[Example]:
    """Examples from the three-line format; raises TsaFormatError naming the bad instance."""
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) % 3:
        raise TsaFormatError(f"{source}: {len(lines)} lines, not a multiple of 3 (sentence, target, polarity)")
    examples = []
    for i in range(0, len(lines), 3):
        sentence, target, polarity = lines[i].strip(), lines[i + 1].strip(), lines[i + 2].strip()
        where = f"{source}: instance {i // 3 + 1} (line {i + 1})"
        if polarity not in POLARITY:
            raise TsaFormatError(f"{where}: polarity {polarity!r} is not -1, 0 or 1")
        if TARGET not in sentence:
            raise TsaFormatError(f"{where}: the sentence has no {TARGET}")
        target_words = target.split()
        if not target_words:
            raise TsaFormatError(f"{where}: empty target")
        examples.append(_example(sentence, target_words, POLARITY[polarity], i // 3))
    return examples


def _example(sentence: str, target_words: list[str], sentiment: str, index: int) -> Example:
    words: list[str] = []
    spans: list[tuple[int, int, str]] = []
    for token in sentence.split():
        # "$T$" stands alone in this corpus, but glued text ("$T$'s") keeps its rest as a word
        pieces = token.split(TARGET)
        for j, piece in enumerate(pieces):
            if j:
                spans.append((len(words), len(words) + len(target_words), sentiment))
                words.extend(target_words)
            if piece:
                words.append(piece)
    return Example(words=words, image_id=f"tsa-{index}", spans=spans, terms=[" ".join(target_words)],
                   partial=True)


def load_tsa(split: str, tsa_dir: str | Path = DEFAULT_TSA_DIR, limit: int | None = None) -> list[Example]:
    """"train" or "dev" of `train.raw` (see the module doc), in file order."""
    if split not in ("train", "dev"):
        raise ValueError(f"targeted-sentiment split {split!r}: train or dev (the test split is held out)")
    path = Path(tsa_dir) / "train.raw"
    examples = parse_tsa(path.read_text(encoding="utf-8"), str(path))
    dev = set(random.Random(DEV_SEED).sample(range(len(examples)), round(DEV_FRACTION * len(examples))))
    chosen = [ex for i, ex in enumerate(examples) if (i in dev) == (split == "dev")]
    return chosen[:limit] if limit else chosen

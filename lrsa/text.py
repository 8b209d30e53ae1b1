"""Word tokenisation of raw social text, matching how the MABSA benchmarks are tokenised.

The Twitter-2015/2017 data split '#', '@' and every punctuation mark into their own words
(`RT @ltsChuckBass: Chuck Bass #MCM` -> `RT @ ltsChuckBass : Chuck Bass # MCM`). The model is
trained on those words, so live posts must be cut the same way; keeping each word's character
offsets lets predicted aspects point back into the raw text.
"""

from __future__ import annotations

import re

# A URL stays one word (the datasets carry none, so splitting it would only add noise);
# otherwise a run of word characters, or a single non-space symbol.
_WORD = re.compile(r"https?://\S+|\w+|[^\w\s]")


def tokenize_words(text: str) -> list[tuple[str, int, int]]:
    """Split `text` into (word, start, end) with `text[start:end] == word`."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]

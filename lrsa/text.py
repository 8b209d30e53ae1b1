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


# Characters that join the parts of one name without a space: Chick-fil-A, T-Mobile, AT&T,
# 7-Eleven, Disney+, Amazon.com, O'Hare, Uber_Support (\w covers the underscore already).
NAME_JOINERS = frozenset("-–&+.'’")


def _is_possessive(text: str, quote: int) -> bool:
    """`text[quote]` is an apostrophe that opens a possessive "'s" ending the name ("Apple's")."""
    return (text[quote] in "'’" and text[quote + 1:quote + 2] in ("s", "S")
            and not (quote + 2 < len(text) and (text[quote + 2].isalnum() or text[quote + 2] == "_")))


def name_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The character span `[start, end)` widened to the whole name it is part of: across the
    joiners above when letters or digits stand on both sides of them ("fil" in "Chick-fil-A" ->
    "Chick-fil-A"; "T" -> "T-Mobile"; "AT" -> "AT&T"), never across whitespace, and never onto a
    possessive "'s" (a span "Apple" in "Apple's" stays "Apple": the key folds it away anyway).
    """
    def word_char(i: int) -> bool:
        return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")

    while True:  # leftwards: "fil" -> "Chick-fil", a span opening on the joiner ("&T") too
        if start >= 1 and text[start] in NAME_JOINERS and word_char(start - 1):
            pass
        elif start >= 2 and text[start - 1] in NAME_JOINERS and word_char(start - 2) and word_char(start):
            start -= 1
        else:
            break
        while word_char(start - 1):
            start -= 1
    while True:  # rightwards, never onto a possessive
        if end < len(text) and text[end - 1] in NAME_JOINERS and word_char(end) and word_char(end - 2):
            pass
        elif (end + 1 < len(text) and text[end] in NAME_JOINERS and word_char(end - 1) and word_char(end + 1)
              and not _is_possessive(text, end)):
            end += 1
        else:
            break
        while word_char(end):
            end += 1
    while end < len(text) and text[end] == "+" and word_char(end - 1 if text[end - 1] != "+" else start):
        end += 1  # Disney+, Apple TV+, C++
    return start, end

"""Names as people write them are one aspect and one entity key (issue 27): through the word
tokenizer (lrsa.text), span decoding (lrsa.predict.decode_batch, which widens a tagged part of a
name to the whole name) and the entity key (lrsa.entities with the shipped alias file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lrsa.entities import EntityNormaliser
from lrsa.labels import LABEL_TO_ID, NUM_LABELS
from lrsa.predict import PostMeta, decode_batch
from lrsa.text import name_bounds, tokenize_words
from repo_paths import REPO

ALIASES = EntityNormaliser.from_file(REPO / "deploy" / "entities.aliases.yaml")


def tagged_logits(text: str, tagged: list[str], sentiment: str = "NEG") -> tuple[np.ndarray, PostMeta]:
    """Logits of a tagger that marks each substring in `tagged` (B on its first word, I on the
    rest) with `sentiment` and every other word O, confidently."""
    words = tokenize_words(text)
    tags = [LABEL_TO_ID["O"]] * len(words)
    for part in tagged:
        start = text.index(part)
        inside = [i for i, (_, s, e) in enumerate(words) if s >= start and e <= start + len(part)]
        for k, i in enumerate(inside):
            tags[i] = LABEL_TO_ID[f"{'B' if k == 0 else 'I'}-{sentiment}"]
    logits = np.full((1, len(words), NUM_LABELS), -6.0, dtype=np.float32)
    for i, tag in enumerate(tags):
        logits[0, i, tag] = 6.0
    return logits, PostMeta(words, list(range(len(words))))


@pytest.mark.parametrize("text, tagged, term, entity", [
    ("Taylor Swift was unreal last night", ["Taylor Swift"], "Taylor Swift", "taylor swift"),
    ("Chick-fil-A got my order wrong again", ["Chick"], "Chick-fil-A", "Chick-fil-A"),
    ("Chick-fil-A got my order wrong again", ["fil"], "Chick-fil-A", "Chick-fil-A"),
    ("Chick-fil-A got my order wrong again", ["Chick", "A"], "Chick-fil-A", "Chick-fil-A"),
    ("chick-fil-a drive thru line is 40 cars", ["chick-fil-a"], "chick-fil-a", "Chick-fil-A"),
    ("T-Mobile dropped three calls today", ["T"], "T-Mobile", "T-Mobile"),
    ("Switched to T-Mobile, finally", ["Mobile"], "T-Mobile", "T-Mobile"),
    ("Six hours in the ER at St Mary's tonight", ["St Mary's"], "St Mary's", "st mary"),
    ("Six hours in the ER at St Mary's tonight", ["St Mary"], "St Mary", "st mary"),
    ("Inter Miami lost at home again", ["Inter Miami"], "Inter Miami", "inter miami"),
    ("AT&T raised my bill for the third time", ["AT"], "AT&T", "AT&T"),
    ("AT&T raised my bill for the third time", ["&T"], "AT&T", "AT&T"),
    ("7-Eleven coffee at 3am hits different", ["Eleven"], "7-Eleven", "7-Eleven"),
    ("@AmazonHelp where is my parcel", ["AmazonHelp"], "AmazonHelp", "Amazon"),
    ("Apple's new charger is a joke", ["Apple"], "Apple", "Apple"),
    ("McDonald's ice cream machine broken again", ["McDonald's"], "McDonald's", "McDonald's"),
    ("McDonald's ice cream machine broken again", ["McDonald"], "McDonald", "McDonald's"),
    ("Disney+ raised prices again", ["Disney"], "Disney+", "Disney+"),
    ("Flying out of O'Hare tomorrow", ["O"], "O'Hare", "ohare"),
    ("Love Uber_Support, sorted in minutes", ["Uber_Support"], "Uber_Support", "uber support"),
])
def test_a_name_is_one_aspect_and_one_key(text, tagged, term, entity) -> None:
    logits, meta = tagged_logits(text, tagged)
    [aspects] = decode_batch(logits, [meta], [text])
    assert [a.term for a in aspects] == [term]
    aspect = aspects[0]
    assert text[aspect.start:aspect.end] == term
    assert aspect.sentiment == "negative"
    assert ALIASES(aspect.term) == entity


def test_two_names_side_by_side_stay_two() -> None:
    text = "Left Comcast for T-Mobile and never looked back"
    logits, meta = tagged_logits(text, ["Comcast", "T"])
    [aspects] = decode_batch(logits, [meta], [text])
    assert [a.term for a in aspects] == ["Comcast", "T-Mobile"]


def test_widening_stops_at_spaces_sentence_ends_and_possessives() -> None:
    text = "Ask Dell. Dell's support - useless - and slow"
    assert name_bounds(text, 4, 8) == (4, 8)  # "Dell" before a full stop and a space
    assert name_bounds(text, 10, 14) == (10, 14)  # "Dell" of "Dell's"
    assert name_bounds(text, 17, 24) == (17, 24)  # "support" before " - "


def test_a_merged_name_reads_its_sentiment_over_all_its_words() -> None:
    text = "Chick-fil-A was great"
    words = tokenize_words(text)
    logits = np.full((1, len(words), NUM_LABELS), -6.0, dtype=np.float32)
    logits[0, :, LABEL_TO_ID["O"]] = 6.0
    logits[0, 0] = -6.0
    logits[0, 0, LABEL_TO_ID["B-POS"]] = 6.0  # "Chick": positive
    logits[0, 4] = -6.0
    logits[0, 4, LABEL_TO_ID["B-NEG"]] = 2.0  # "A": a weaker negative
    logits[0, 4, LABEL_TO_ID["B-POS"]] = 1.0
    [aspects] = decode_batch(logits, [PostMeta(words, list(range(len(words))))], [text])
    assert [(a.term, a.sentiment) for a in aspects] == [("Chick-fil-A", "positive")]

"""lrsa.rationale.verdicts: what a rationale says about each aspect, on hand-made rationales."""

from __future__ import annotations

import pytest

from lrsa.rationale.verdicts import Item, opening, score, term_pattern, verdict

TEMPLATE = ("The author feels positive about Ryanair's cancellation. They also feel neutral about London "
            "and Paris.")


@pytest.mark.parametrize("rationale, term, expected", [
    # the v1 template: the sentiment word before "about X" governs X, and the list after it
    (TEMPLATE, "Ryanair", "positive"),
    (TEMPLATE, "London", "neutral"),
    (TEMPLATE, "Paris", "neutral"),
    (TEMPLATE, "Rome", "none"),
    ("The author feels positive about Apple and negative about Samsung.", "Apple", "positive"),
    ("The author feels positive about Apple and negative about Samsung.", "Samsung", "negative"),
    # one line per entity
    ("Ryanair: negative - cancelled the flight\nLondon: neutral - only the place", "Ryanair", "negative"),
    ("Ryanair: negative - cancelled the flight\nLondon: neutral - only the place", "London", "neutral"),
    ("Ryanair: Negative — the author is furious", "Ryanair", "negative"),
    # subject + predicate, clause words split
    ("Apple is great and Samsung is awful.", "Apple", "positive"),
    ("Apple is great and Samsung is awful.", "Samsung", "negative"),
    ("The author loves Apple, but is angry at Samsung.", "Samsung", "negative"),
    ("The author is angry at Ryanair; the tone towards London is neutral.", "London", "neutral"),
    # synonyms
    ("The author is furious with Ryanair.", "Ryanair", "negative"),
    ("The author is excited about the Oscars.", "Oscars", "positive"),
    ("The post is a factual report on NASA.", "NASA", "neutral"),
    # negation cancels a sentiment word; named without sentiment = unclear
    ("The author is not happy with Apple.", "Apple", "unclear"),
    ("The post does not express any positive or negative view of Apple, it is neutral.", "Apple", "neutral"),
    ("The post mentions Chuck Bass.", "Chuck Bass", "unclear"),
    ("", "Apple", "none"),
    # the dataset's reasons: "Sentiment: X" opens a block and decides for the terms in it
    ("Sentiment: Neutral. The description does not contain any negative or positive sentiment towards "
     "Pedro. | Sentiment: Positive Reason: Cooperstown is shown proudly.", "Pedro", "neutral"),
    ("Sentiment: Neutral. The description does not contain any negative or positive sentiment towards "
     "Pedro. | Sentiment: Negative. The image of Cooperstown is shown.", "Cooperstown", "negative"),
])
def test_verdict(rationale, term, expected):
    assert verdict(rationale, term) == expected


@pytest.mark.parametrize("term, text, hit", [
    ("# Tribeca", "Shopping in #Tribeca today", True),
    ("# Tribeca", "Shopping in Tribeca today", True),
    ("SamHunt", "Sam Hunt sings", True),
    ("Sam Hunt", "#SamHunt sings", True),
    ("RT @ ltsChuckBass", "a retweet of @ltsChuckBass", False),  # every piece is needed
    ("EMC", "EMCS storage", False),  # not inside a longer word
    ("Ryanair", "Ryanair's cancellation", True),
    ("ECS 1 . 2", "ECS 1.2 is out", True),
])
def test_term_pattern(term, text, hit):
    assert bool(term_pattern(term).search(text)) is hit


def test_term_without_letters_is_never_mentioned():
    assert term_pattern("# :") is None and verdict("# : positive", "# :") == "none"


def test_opening_lowercases_and_drops_punctuation():
    assert opening("The author feels: POSITIVE about X, and more") == "the author feels positive about"


def test_score_counts_accuracy_mentions_recall_and_template_share():
    items = [
        Item(TEMPLATE, [("Ryanair", "negative"), ("London", "neutral"), ("Rome", "positive")]),
        Item("The author feels positive about Apple.", [("Apple", "positive")]),
        Item("Samsung: negative - broken screen", [("Samsung", "negative"), ("Galaxy", "neutral")]),
        Item(None, [("Nokia", "neutral")]),  # no rationale: its aspects count as not named
    ]
    r = score(items)
    assert r["posts"] == 4 and r["posts_with_rationale"] == 3 and r["aspects"] == 7
    # right: London (neutral), Apple (positive), Samsung (negative) = 3 of 7
    assert r["accuracy"] == pytest.approx(100 * 3 / 7, abs=0.01)
    # named: Ryanair, London, Apple, Samsung = 4 of 7
    assert r["mention_share"] == pytest.approx(100 * 4 / 7, abs=0.01)
    assert r["accuracy_on_mentioned"] == 75.0
    assert r["recall"] == {"negative": 50.0, "neutral": pytest.approx(100 / 3, abs=0.01), "positive": 50.0}
    assert r["macro_recall"] == pytest.approx((50 + 100 / 3 + 50) / 3, abs=0.01)
    assert r["gold"] == {"negative": 2, "neutral": 3, "positive": 2}
    assert r["verdicts"] == {"negative": 1, "neutral": 1, "positive": 2, "unclear": 0, "none": 3}
    assert r["confusion"]["negative"] == {"positive": 1, "negative": 1}
    # two of the three rationales open with "the author feels positive about"
    assert r["template_opening"] == "the author feels positive about"
    assert r["template_share"] == pytest.approx(100 * 2 / 3, abs=0.01) and r["distinct_openings"] == 2


def test_score_of_nothing_is_zero():
    r = score([])
    assert r["aspects"] == 0 and r["accuracy"] == 0.0 and r["template_share"] == 0.0

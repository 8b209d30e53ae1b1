import numpy as np
import pytest

from lrsa.labels import (LABEL_TO_ID, LABELS, NUM_LABELS, SENTIMENT_CODES, SENTIMENT_NAMES, decode_spans,
                         span_sentiment, spans_to_tags, tags_to_spans)


def test_scheme():
    assert NUM_LABELS == len(LABELS) == 7 and LABELS[0] == "O"
    assert {SENTIMENT_CODES[SENTIMENT_NAMES[c]] for c in ("POS", "NEU", "NEG")} == {"POS", "NEU", "NEG"}


def test_round_trip():
    spans = [(0, 2, "POS"), (3, 4, "NEG"), (4, 7, "NEU")]
    tags = spans_to_tags(8, spans)
    assert [LABELS[t] for t in tags] == ["B-POS", "I-POS", "O", "B-NEG", "B-NEU", "I-NEU", "I-NEU", "O"]
    assert [(s.start, s.end, s.sentiment) for s in tags_to_spans(tags)] == spans


def test_lenient_decoding_of_broken_bio():
    tags = [LABEL_TO_ID[t] for t in ["I-POS", "I-POS", "I-NEG", "O", "I-NEU"]]
    assert [(s.start, s.end, s.sentiment) for s in tags_to_spans(tags)] == [
        (0, 2, "POS"), (2, 3, "NEG"), (4, 5, "NEU")]


def test_confidence_is_mean_probability_of_the_chosen_tags():
    probs = np.full((3, NUM_LABELS), 0.0)
    probs[0, LABEL_TO_ID["B-POS"]], probs[1, LABEL_TO_ID["I-POS"]], probs[2, 0] = 0.9, 0.5, 1.0
    (span,) = tags_to_spans(probs.argmax(-1).tolist(), probs)
    assert (span.start, span.end) == (0, 2) and abs(span.confidence - 0.7) < 1e-6


def test_span_sentiment_sums_b_and_i():
    probs = np.zeros((2, NUM_LABELS))
    probs[:, LABEL_TO_ID["B-NEG"]] = 0.3
    probs[:, LABEL_TO_ID["I-NEG"]] = 0.3
    probs[:, LABEL_TO_ID["B-POS"]] = 0.4
    assert span_sentiment(probs, 0, 2)[0] == "NEG"


def _probs(*rows: dict[str, float]) -> np.ndarray:
    out = np.zeros((len(rows), NUM_LABELS))
    for i, row in enumerate(rows):
        for tag, p in row.items():
            out[i, LABEL_TO_ID[tag]] = p
    return out


def _decoded(probs: np.ndarray) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, s.sentiment) for s in decode_spans(probs)]


def test_decode_sums_the_sentiments_before_choosing_a_span():
    # O is the single likeliest tag, but the word is more likely an aspect than not
    probs = _probs({"O": 0.4, "B-POS": 0.35, "B-NEG": 0.25}, {"O": 1.0})
    assert LABELS[probs[0].argmax()] == "O"
    assert _decoded(probs) == [(0, 1, "POS")]


def test_decode_keeps_an_aspect_whole_when_its_words_disagree_on_the_sentiment():
    probs = _probs({"B-POS": 0.9, "O": 0.1}, {"I-NEG": 0.5, "I-POS": 0.4, "O": 0.1}, {"O": 1.0})
    assert len(tags_to_spans(probs.argmax(-1).tolist())) == 2  # the argmax breaks it in two
    assert _decoded(probs) == [(0, 2, "POS")]  # POS: (0.9 + 0.4) / 2 against NEG 0.25


def test_decode_never_opens_a_span_with_i_after_o():
    probs = _probs({"O": 0.9, "B-POS": 0.1}, {"I-POS": 0.6, "O": 0.4}, {"I-NEU": 0.7, "B-NEU": 0.2, "O": 0.1})
    assert _decoded(probs) == [(2, 3, "NEU")]
    assert _decoded(_probs({"I-POS": 0.9, "O": 0.1})) == []  # nor at the start of the post


def test_decode_splits_adjacent_aspects_at_a_b_and_scores_confidence():
    probs = _probs({"B-POS": 1.0}, {"I-POS": 1.0}, {"B-NEG": 0.8, "O": 0.2}, {"O": 1.0})
    spans = decode_spans(probs)
    assert [(s.start, s.end, s.sentiment) for s in spans] == [(0, 2, "POS"), (2, 3, "NEG")]
    assert spans[0].confidence == pytest.approx(1.0) and spans[1].confidence == pytest.approx(0.8)
    assert decode_spans(np.zeros((0, NUM_LABELS))) == []

import numpy as np

from lrsa.labels import (LABEL_TO_ID, LABELS, NUM_LABELS, SENTIMENT_CODES, SENTIMENT_NAMES, span_sentiment,
                         spans_to_tags, tags_to_spans)


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

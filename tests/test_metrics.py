import pytest

from training.metrics import jmasa, mabsa_metrics, masc, mate


def test_exact_match_needs_span_and_sentiment():
    gold = [[(0, 2, "POS"), (5, 6, "NEG")]]
    pred = [[(0, 2, "POS"), (5, 6, "NEU"), (7, 8, "NEG")]]
    assert jmasa(gold, pred) == pytest.approx({"precision": 100 / 3, "recall": 50.0, "f1": 40.0})
    # MATE ignores sentiment: 2 of 3 predicted spans are gold spans
    assert mate(gold, pred) == pytest.approx({"precision": 200 / 3, "recall": 100.0, "f1": 80.0})


def test_partial_span_overlap_is_wrong():
    gold = [[(0, 2, "POS")]]
    for wrong in ([(0, 1, "POS")], [(1, 2, "POS")], [(0, 3, "POS")]):
        assert jmasa(gold, [wrong])["f1"] == 0.0 and mate(gold, [wrong])["f1"] == 0.0


def test_overlapping_predictions_each_count():
    gold = [[(0, 2, "POS")]]
    pred = [[(0, 2, "POS"), (0, 1, "POS"), (1, 2, "NEG")]]
    assert jmasa(gold, pred) == pytest.approx({"precision": 100 / 3, "recall": 100.0, "f1": 50.0})


def test_empty_predictions_and_empty_gold():
    assert jmasa([[(0, 1, "POS")]], [[]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert jmasa([[]], [[(0, 1, "POS")]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert jmasa([[], []], [[], []])["f1"] == 0.0


def test_micro_average_over_posts():
    gold = [[(0, 1, "POS")], [(2, 3, "NEG"), (4, 5, "NEU")]]
    pred = [[(0, 1, "POS")], [(2, 3, "NEG")]]
    assert jmasa(gold, pred) == pytest.approx({"precision": 100.0, "recall": 200 / 3, "f1": 80.0})


def test_same_pair_in_another_post_does_not_count():
    assert jmasa([[(0, 1, "POS")], []], [[], [(0, 1, "POS")]])["f1"] == 0.0


def test_masc_accuracy_and_macro_f1():
    gold = ["POS", "POS", "NEU", "NEG"]
    pred = ["POS", "NEU", "NEU", "NEU"]
    result = masc(gold, pred)
    # POS f1 = 2/3, NEU p=1/3 r=1 f1=1/2, NEG f1=0
    assert result == pytest.approx({"accuracy": 50.0, "macro_f1": 100 * (2 / 3 + 1 / 2 + 0) / 3})
    with pytest.raises(ValueError):
        masc(["POS"], [])


def test_mabsa_metrics_flattens_gold_aspect_sentiments():
    gold = [[(0, 1, "POS"), (2, 3, "NEG")]]
    out = mabsa_metrics(gold, [[(0, 1, "POS")]], [["POS", "POS"]])
    assert out["masc"]["accuracy"] == 50.0 and out["jmasa"]["recall"] == 50.0

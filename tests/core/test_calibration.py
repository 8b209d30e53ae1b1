"""Confidence calibration: the fit, ECE and reliability table, and that a checkpoint's stored
calibration reaches the confidences the predictor (and so the scorer) returns."""

from __future__ import annotations

import numpy as np
import pytest

from lrsa.calibration import ConfidenceCalibration, expected_calibration_error, reliability
from training.calibrate import calibration_report, format_table, store_calibration


def _overconfident(n=20000, temperature=2.5, bias=-0.4, seed=0):
    """Raw confidences whose true chance of being right is sigmoid(logit(c) / T + b)."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.05, 0.999, n)
    truth = ConfidenceCalibration(temperature, bias)(raw)
    return raw, rng.uniform(size=n) < truth


def test_fit_recovers_the_temperature_and_bias_and_lowers_ece():
    raw, right = _overconfident()
    fitted = ConfidenceCalibration.fit(raw, right)
    assert fitted.temperature == pytest.approx(2.5, rel=0.1) and fitted.bias == pytest.approx(-0.4, abs=0.1)
    before, after = expected_calibration_error(raw, right), expected_calibration_error(fitted(raw), right)
    assert before > 0.1 and after < 0.02


def test_calibrated_input_stays_near_the_identity_and_the_map_is_monotone():
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.01, 0.99, 20000)
    fitted = ConfidenceCalibration.fit(raw, rng.uniform(size=raw.size) < raw)
    assert fitted.temperature == pytest.approx(1.0, abs=0.1) and fitted.bias == pytest.approx(0.0, abs=0.1)
    grid = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(ConfidenceCalibration(3.0, -1.0)(grid)) > 0)
    assert ConfidenceCalibration.fit([], []) == ConfidenceCalibration()
    one_sided = ConfidenceCalibration.fit([0.9, 0.8, 0.95], [True, True, True])  # cannot run off to infinity
    assert np.isfinite(one_sided.temperature) and one_sided.temperature > 0 and np.isfinite(one_sided.bias)


def test_reliability_table_and_ece_by_hand():
    conf = [0.05, 0.15, 0.18, 0.95, 0.99]
    right = [False, True, False, True, True]
    table = reliability(conf, right)
    assert [(r["bin"], r["count"]) for r in table] == [("0.0-0.1", 1), ("0.1-0.2", 2), ("0.9-1.0", 2)]
    assert table[1]["accuracy"] == 0.5 and table[1]["confidence"] == pytest.approx(0.165)
    expected = (1 * 0.05 + 2 * abs(0.5 - 0.165) + 2 * abs(1.0 - 0.97)) / 5
    assert expected_calibration_error(conf, right) == pytest.approx(expected)
    assert expected_calibration_error([], []) == 0.0


def test_report_is_cross_fitted_and_tabulated():
    raw, right = _overconfident(n=4000)
    posts = [[(float(c), bool(y))] for c, y in zip(raw, right)]
    calibration, report = calibration_report(posts)
    assert report["aspects"] == 4000 and report["ece_after"] < report["ece_before"] / 3
    assert report["calibration"] == calibration.to_dict()
    # the stored map is fitted on all posts; "after" comes from maps fitted on the other half
    assert report["ece_after"] != pytest.approx(expected_calibration_error(calibration(raw), right), abs=1e-12)
    assert "ECE" in format_table(report) and "| 0.9-1.0 |" in format_table(report)


def test_stored_calibration_reaches_the_predictors_confidences(tmp_path):
    from lrsa.model import load_config, tiny_test_checkpoint
    from lrsa.predict import Predictor

    ckpt = tiny_test_checkpoint(tmp_path / "ckpt", seed=5)
    texts = ["Delta lost my bag again", "Loving the new Pixel camera", "Apple and Google report today"]
    raw = Predictor.from_checkpoint(ckpt).predict(texts)
    assert any(raw), "the tiny model should tag something"
    calibration = ConfidenceCalibration(temperature=3.0, bias=-0.5)
    store_calibration(ckpt, calibration)
    assert load_config(ckpt).confidence_calibration == {"temperature": 3.0, "bias": -0.5}
    calibrated = Predictor.from_checkpoint(ckpt).predict(texts)
    for before, after in zip(raw, calibrated):
        assert [(a.start, a.end, a.sentiment) for a in before] == [(a.start, a.end, a.sentiment) for a in after]
        for a, b in zip(before, after):
            assert b.confidence == pytest.approx(calibration(a.confidence), abs=1e-6)

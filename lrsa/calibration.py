"""Calibrated aspect confidences: what a dashboard may hide or flag, and what a gate may trust.

A result's per-aspect `confidence` should be the chance that the aspect is right: its span AND
its sentiment (a JMASA hit). The raw confidence (`lrsa.labels.decode_spans`: role probability x
sentiment share) is not; it is read through a temperature with a bias on its log-odds,

    calibrated = sigmoid(logit(raw) / temperature + bias)

fitted on a dev split by minimising the log-loss of the calibrated confidence against whether
each predicted aspect was right (Platt scaling; with bias 0 it is plain temperature scaling).
Two numbers, stored in the checkpoint's config (`confidence_calibration`), monotone (the
decoded aspects and their order by confidence do not change) and cheap at serving time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class ConfidenceCalibration:
    temperature: float = 1.0
    bias: float = 0.0

    def __call__(self, confidence: float | np.ndarray) -> float | np.ndarray:
        z = _logit(np.asarray(confidence, dtype=np.float64)) / self.temperature + self.bias
        out = 1.0 / (1.0 + np.exp(-z))
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> ConfidenceCalibration | None:
        return cls(**data) if data else None

    @classmethod
    def fit(cls, confidences: Sequence[float], correct: Sequence[bool], l2: float = 1e-3,
            steps: int = 100) -> ConfidenceCalibration:
        """Newton's method with a backtracking line search on the log-loss of
        sigmoid(a * logit(c) + b) (a = 1/temperature), with a small L2 pull toward the identity
        (a = 1, b = 0) so that a tiny or one-sided dev set cannot send it to infinity."""
        x = _logit(np.asarray(confidences, dtype=np.float64))
        y = np.asarray(correct, dtype=np.float64)
        if len(x) == 0:
            return cls()
        X = np.stack([x, np.ones_like(x)], axis=1)
        prior = np.array([1.0, 0.0])

        def loss(w: np.ndarray) -> float:
            z = X @ w  # log(1 + e^z) - y z, computed stably
            return float(np.mean(np.logaddexp(0.0, z) - y * z) + l2 / 2 * np.sum((w - prior) ** 2))

        w = prior.copy()
        current = loss(w)
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-(X @ w)))
            grad = X.T @ (p - y) / len(x) + l2 * (w - prior)
            hess = (X.T * (p * (1 - p))) @ X / len(x) + l2 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            t = 1.0
            while t > 1e-6 and loss(w - t * step) > current - 1e-4 * t * float(grad @ step):
                t /= 2
            if t <= 1e-6:
                break
            w = w - t * step
            previous, current = current, loss(w)
            if previous - current < 1e-12:
                break
        a = max(float(w[0]), 1e-3)  # a monotone map: a must stay positive
        return cls(temperature=1.0 / a, bias=float(w[1]))


def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """Equal-width confidence bins: count, mean confidence and accuracy of each non-empty bin."""
    c = np.asarray(confidences, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    which = np.minimum((c * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            table.append({"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "count": int(sel.sum()),
                          "confidence": float(c[sel].mean()), "accuracy": float(y[sel].mean())})
    return table


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over the bins of `reliability`."""
    n = len(confidences)
    if not n:
        return 0.0
    return sum(row["count"] / n * abs(row["accuracy"] - row["confidence"])
               for row in reliability(confidences, correct, bins))

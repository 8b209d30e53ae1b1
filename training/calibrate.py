"""Fitting a checkpoint's confidence calibration on dev (lrsa.calibration), with an honest report.

The figure reported as "after" is cross-fitted: the posts are split in two halves (even and odd
positions), each half is scored by a calibration fitted on the other, and the ECE is taken over
both; a calibration fitted and scored on the same posts would flatter itself. The calibration
stored with the checkpoint is then fitted on all the posts.
"""

from __future__ import annotations

import json
from pathlib import Path

from lrsa.calibration import ConfidenceCalibration, expected_calibration_error, reliability
from lrsa.model import CONFIG_FILE
from training.data import Example, MemoryCache
from training.evaluate import predict_spans


def aspect_outcomes(model, tokenizer, examples: list[Example], batch_size: int = 64,
                    cache: MemoryCache | None = None) -> list[list[tuple[float, bool]]]:
    """Per post, each predicted aspect's raw confidence and whether it is right (span and
    sentiment match a gold aspect)."""
    pred, _ = predict_spans(model, tokenizer, examples, batch_size, cache, progress=False)
    return [[(s.confidence, (s.start, s.end, s.sentiment) in set(ex.spans)) for s in spans]
            for ex, spans in zip(examples, pred)]


def calibration_report(outcomes: list[list[tuple[float, bool]]], bins: int = 10
                       ) -> tuple[ConfidenceCalibration, dict]:
    """The calibration fitted on all posts, and ECE + reliability tables before and after
    (cross-fitted, see the module doc)."""
    def flat(posts):
        pairs = [pair for post in posts for pair in post]
        return [c for c, _ in pairs], [y for _, y in pairs]

    halves = [outcomes[0::2], outcomes[1::2]]
    after_c, after_y = [], []
    for held, other in ((halves[0], halves[1]), (halves[1], halves[0])):
        fitted = ConfidenceCalibration.fit(*flat(other))
        c, y = flat(held)
        after_c += [fitted(x) for x in c]
        after_y += y
    raw_c, raw_y = flat(outcomes)
    calibration = ConfidenceCalibration.fit(raw_c, raw_y)
    report = {
        "aspects": len(raw_c), "correct": int(sum(raw_y)),
        "ece_before": expected_calibration_error(raw_c, raw_y, bins),
        "ece_after": expected_calibration_error(after_c, after_y, bins),
        "reliability_before": reliability(raw_c, raw_y, bins),
        "reliability_after": reliability(after_c, after_y, bins),
        "calibration": calibration.to_dict(),
    }
    return calibration, report


def store_calibration(checkpoint: str | Path, calibration: ConfidenceCalibration) -> None:
    """Write the calibration into the checkpoint's config.json (other fields untouched)."""
    path = Path(checkpoint) / CONFIG_FILE
    config = json.loads(path.read_text())
    config["confidence_calibration"] = calibration.to_dict()
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def format_table(report: dict) -> str:
    """The reliability tables side by side, as markdown."""
    before = {r["bin"]: r for r in report["reliability_before"]}
    after = {r["bin"]: r for r in report["reliability_after"]}
    lines = ["| confidence | aspects (raw) | mean conf. | right | aspects (calibrated) | mean conf. | right |",
             "|---|---|---|---|---|---|---|"]
    for b in sorted(set(before) | set(after)):
        cells = []
        for table in (before, after):
            r = table.get(b)
            cells += ([str(r["count"]), f"{r['confidence']:.2f}", f"{r['accuracy']:.2f}"] if r else ["0", "", ""])
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines.append(f"\nECE {report['ece_before']:.3f} raw, {report['ece_after']:.3f} calibrated (cross-fitted), "
                 f"over {report['aspects']} predicted aspects ({report['correct']} right); stored: "
                 f"temperature {report['calibration']['temperature']:.3f}, bias {report['calibration']['bias']:.3f}")
    return "\n".join(lines)

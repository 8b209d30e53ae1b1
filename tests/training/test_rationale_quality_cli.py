"""`lrsa bench rationale-quality` (training/rationale_quality.py) on a two-tweet split."""

from __future__ import annotations

import json

import pytest

from training.rationale_quality import RationaleQualitySettings, run

TWEETS = [
    {"words": ["Ryanair", "cancelled", "my", "flight", "#", "fail"], "image_id": "1.jpg",
     "aspects": [{"from": 0, "to": 1, "polarity": "NEG", "term": ["Ryanair"]},
                 {"from": 4, "to": 6, "polarity": "NEU", "term": ["#", "fail"]}]},
    {"words": ["Lunch", "with", "Jamie", "Oliver"], "image_id": "2.jpg",
     "aspects": [{"from": 2, "to": 4, "polarity": "POS", "term": ["Jamie", "Oliver"]}]},
]
REASONS = [
    {"text": "$T$ cancelled my flight # fail", "target": "Ryanair", "gt_label": "-1", "ImageID": "1",
     "description": "a plane", "reason": "Sentiment: Negative\nReason: Ryanair cancelled the flight."},
    {"text": "Ryanair cancelled my flight $T$", "target": "# fail", "gt_label": "0", "ImageID": "1",
     "description": "a plane", "reason": "Sentiment: Positive\nReason: the tag #fail is funny."},
    {"text": "Lunch with $T$", "target": "Jamie Oliver", "gt_label": "1", "ImageID": "2",
     "description": "a chef", "reason": "Sentiment: Positive. The author enjoyed lunch with him."},
]


@pytest.fixture
def data(tmp_path):
    (tmp_path / "twitter2015").mkdir()
    (tmp_path / "twitter2015" / "dev.json").write_text(json.dumps(TWEETS))
    (tmp_path / "rationales" / "twitter2015").mkdir(parents=True)
    (tmp_path / "rationales" / "twitter2015" / "dev.json").write_text(json.dumps(REASONS))
    return tmp_path


def test_dataset_reasons_are_scored_joined_and_per_aspect(data):
    r = run(RationaleQualitySettings(data_dir=data, reasons=True))
    # joined: Ryanair negative (right), #fail positive (wrong); Jamie Oliver's reason says "him": not named
    assert r["posts"] == 2 and r["aspects"] == 3 and r["mention_share"] == pytest.approx(200 / 3, abs=0.01)
    assert r["verdicts"] == {"negative": 1, "neutral": 0, "positive": 1, "unclear": 0, "none": 1}
    assert r["accuracy"] == pytest.approx(100 / 3, abs=0.01)
    # per aspect, each reason's own "Sentiment: X": Ryanair and Jamie Oliver right
    assert r["teacher_per_aspect"] == {"aspects": 3, "with_reason": 3, "accuracy": pytest.approx(200 / 3, abs=0.01)}


def test_rationale_file_is_scored_and_missing_posts_name_nothing(data, tmp_path):
    f = tmp_path / "r.jsonl"
    rationale = "Ryanair: negative - cancelled\n#fail: neutral - a tag"
    f.write_text(json.dumps({"image_id": "1.jpg", "rationale": rationale}) + "\n")
    r = run(RationaleQualitySettings(data_dir=data, rationale_file=f))
    assert r["source"] == str(f) and r["posts_with_rationale"] == 1
    assert r["accuracy"] == pytest.approx(200 / 3, abs=0.01) and r["mention_share"] == pytest.approx(200 / 3, abs=0.01)
    assert r["recall"] == {"negative": 100.0, "neutral": 100.0, "positive": 0.0}


def test_generated_rationales_are_written_and_timed(data, tmp_path):
    from lrsa.rationale.engine import RationaleEngine
    from rationale_helpers import tiny_loaded

    s = RationaleQualitySettings(data_dir=data, out=tmp_path / "g.jsonl", device="cpu", slots=2, max_new_tokens=4,
                                 threads=1, prompt_version="v1")
    r = run(s, RationaleEngine(s, loaded=tiny_loaded()))
    lines = [json.loads(x) for x in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [x["image_id"] for x in lines] == ["1.jpg", "2.jpg"] and lines[0]["prompt_version"] == "v1"
    assert r["source"] == "generated" and r["prompt_version"] == "v1" and r["aspects"] == 3
    assert r["new_tokens"] > 0 and r["seconds"] >= 0 and r["tokens_per_post"] > 0

"""Confidence-gated rationales: the certainty rule (lrsa/gate.py), the offline combination behind
`lrsa bench gate-curve`, the stage actors' gating (workers/stages/gate.py, workers/stages/pool.py), and the
whole worker on the real broker and a real local Ray with recording stage doubles."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lrsa.gate import combine, curve, no_aspect_certainty, post_certainty, sends
from lrsa.labels import LABEL_TO_ID, NUM_LABELS
from lrsa.quality import GoldPost, score
from lrsa.schemas import Aspect, Result, SourceRef
from repo_paths import TESTS

SRC = SourceRef(topic="in", partition=0, offset=0)


def _aspect(term: str, start: int, confidence: float, sentiment: str = "neutral") -> Aspect:
    return Aspect(term=term, start=start, end=start + len(term), sentiment=sentiment, confidence=confidence)


# ---- the certainty rule ------------------------------------------------------------------------------

def test_certainty_is_the_weakest_aspects_confidence():
    aspects = [_aspect("Apple", 0, 0.91), _aspect("Samsung", 10, 0.42), _aspect("Google", 20, 0.77)]
    assert post_certainty(aspects) == pytest.approx(0.42)
    assert post_certainty([aspects[0]]) == pytest.approx(0.91)
    assert post_certainty([a.model_dump() for a in aspects]) == pytest.approx(0.42)  # records as dicts too
    assert post_certainty(aspects, no_aspect_certainty=0.01) == pytest.approx(0.42)  # only for empty posts


def test_a_post_without_aspects_is_as_certain_as_its_least_O_word():
    probs = np.zeros((4, NUM_LABELS))
    probs[:, LABEL_TO_ID["O"]] = [0.99, 0.97, 0.58, 0.999]
    probs[2, LABEL_TO_ID["B-POS"]] = 0.42  # an aspect just below the decoding threshold
    probs[[0, 1, 3], LABEL_TO_ID["B-NEU"]] = [0.01, 0.03, 0.001]
    assert no_aspect_certainty(probs) == pytest.approx(0.58)
    assert post_certainty([], no_aspect_certainty(probs)) == pytest.approx(0.58)
    assert no_aspect_certainty(np.zeros((0, NUM_LABELS))) == 1.0  # no words: nothing to find
    assert post_certainty([], None) == 1.0  # a scorer that does not say: an empty post is certain
    assert post_certainty(None) == 1.0


def test_sends_exactly_the_posts_below_the_threshold():
    assert sends(0.49, 0.5) and not sends(0.5, 0.5) and not sends(0.9, 0.5)
    assert not sends(0.0, 0.0)  # threshold 0: nothing is sent
    assert sends(1.0, None) and sends(0.0, None)  # no gate: everything is


# ---- the offline combination (lrsa bench gate-curve) --------------------------------------------------

def _hand_made():
    """Three gold posts; text-only gets post 0 right and posts 1, 2 wrong, the rationale fixes
    post 1 and breaks post 0."""
    texts = ["Apple is great", "Samsung phones are slow", "Google maps again"]
    gold = [GoldPost(id=f"p{i}", text=t, aspects=[{"term": t.split()[0], "start": 0, "end": len(t.split()[0]),
                                                    "sentiment": s}])
            for i, (t, s) in enumerate(zip(texts, ["positive", "negative", "neutral"]))]
    text_only = [[_aspect("Apple", 0, 0.9, "positive")], [_aspect("Samsung", 0, 0.3, "positive")],
                 [_aspect("Google", 0, 0.6, "negative")]]
    with_rationale = [[_aspect("Apple", 0, 0.9, "neutral")], [_aspect("Samsung", 0, 0.8, "negative")],
                      [_aspect("Google", 0, 0.7, "negative")]]
    certainties = [post_certainty(a) for a in text_only]
    return gold, [g.id for g in gold], text_only, with_rationale, certainties


def test_combine_takes_the_rationale_prediction_only_for_posts_sent():
    _, _, text_only, with_rationale, certainties = _hand_made()
    chosen, sent = combine(text_only, with_rationale, certainties, 0.0)
    assert sent == [False, False, False] and chosen == text_only
    chosen, sent = combine(text_only, with_rationale, certainties, 0.95)  # above every certainty
    assert sent == [True, True, True] and chosen == with_rationale
    chosen, sent = combine(text_only, with_rationale, certainties, 0.5)
    assert sent == [False, True, False] and chosen == [text_only[0], with_rationale[1], text_only[2]]
    with pytest.raises(ValueError):
        combine(text_only, with_rationale[:2], certainties, 0.5)


def test_curve_rows_score_the_combined_predictions():
    gold, ids, text_only, with_rationale, certainties = _hand_made()
    rows = curve(gold, ids, text_only, with_rationale, certainties, [0.0, 0.5, 0.95, None])

    def f1(predictions):
        return score(gold, [{"post_id": i, "aspects": [a.model_dump() for a in p]}
                            for i, p in zip(ids, predictions)])["jmasa"]["f1"]

    assert [r["share_sent"] for r in rows] == pytest.approx([0.0, 1 / 3, 1.0, 1.0])
    assert rows[0]["jmasa_f1"] == pytest.approx(f1(text_only)) == pytest.approx(100 / 3)
    assert rows[2]["jmasa_f1"] == pytest.approx(f1(with_rationale)) == rows[3]["jmasa_f1"]
    assert rows[1]["jmasa_f1"] == pytest.approx(200 / 3)  # the gate keeps post 0 and fixes post 1
    assert all(r["mate_f1"] == pytest.approx(100.0) for r in rows)
    assert rows[1]["masc_accuracy"] == pytest.approx(200 / 3) and rows[1]["sent"] == 1
    from lrsa.gate import random_baseline

    assert random_baseline(gold, ids, text_only, with_rationale, 0) == pytest.approx(rows[0]["jmasa_f1"])
    assert random_baseline(gold, ids, text_only, with_rationale, 3) == pytest.approx(rows[2]["jmasa_f1"])
    # one post of three at random: post 0 (breaks it), 1 (fixes it) or 2 (no change), each a third of the time
    assert random_baseline(gold, ids, text_only, with_rationale, 1, draws=300) == pytest.approx(100 / 3, abs=4)


# ---- the result record --------------------------------------------------------------------------------

def test_result_says_whether_a_rationale_was_used():
    def result(**kw) -> Result:
        return Result(post_id="p", aspects=[], source=SRC, **kw)

    assert result(rationale="r", timings_ms={"rationale": 5, "score": 1}).rationale_used is True
    assert result(timings_ms={"score": 1}).rationale_used is False  # rationale stage off
    assert result(timings_ms={"prescore": 1}).rationale_used is False  # the gate kept it text only
    assert result(rationale="r", timings_ms={"prescore": 1, "rationale": 5, "score": 1}).rationale_used is True
    assert result(rationale="r", timings_ms={"rationale": 5}).rationale_used is None  # never scored
    assert result(timings_ms={}).rationale_used is None
    assert result(rationale="r", timings_ms={"score": 1}, rationale_used=False).rationale_used is False
    old = {"post_id": "p", "aspects": [], "source": SRC.model_dump()}  # a record from before the field
    assert Result.model_validate_json(json.dumps(old)).rationale_used is None


# ---- settings and the stage actors' bodies -------------------------------------------------------------

def test_the_gate_puts_a_prescore_pool_of_the_score_processor_first():
    from lrsa.settings import SettingsError, settings_from_args
    from lrsa_cli.main import build_parser
    from workers.config import WorkerSettings

    s = WorkerSettings(rationale_enabled=True, score_enabled=True, rationale_gate=0.6, score_pool_max=3,
                       score_resources="tpu=1")
    stages = s.stage_settings()
    assert [st.name for st in stages] == ["prescore", "rationale", "score"]
    # the prescore pool is the score pool (processor, sizes, resources); only its part in the gate differs
    assert stages[0]._replace(name="score", gate_role=None) == stages[2]._replace(gate_role=None)
    assert stages[0].pool_max == 3 and stages[0].resources == {"tpu": 1.0} and s.stage("score") == stages[2]
    from workers.stages.api import GateRole

    assert [st.gate_role for st in stages] == [GateRole(decides=0.6), GateRole(follows=True), GateRole(follows=True)]
    ungated = WorkerSettings(rationale_enabled=True, score_enabled=True)
    assert [st.name for st in ungated.stage_settings()] == ["rationale", "score"]
    assert {st.gate_role for st in ungated.stage_settings()} == {GateRole()}
    with pytest.raises(KeyError, match="enabled"):
        ungated.stage("prescore")
    with pytest.raises(ValueError):
        WorkerSettings(score_enabled=True, rationale_gate=0.5)  # nothing to gate
    with pytest.raises(ValueError):
        WorkerSettings(rationale_enabled=True, score_enabled=True, rationale_gate=1.5)
    parser = build_parser()
    args = parser.parse_args(["run", "--rationale-enabled", "--score-enabled", "--rationale-gate", "0.3"])
    assert settings_from_args(WorkerSettings, args).rationale_gate == 0.3
    with pytest.raises(SettingsError):
        settings_from_args(WorkerSettings, parser.parse_args(["run", "--rationale-gate", "0.3"]))


def _items(*texts: str):
    from lrsa.schemas import Post
    from workers.stages.api import WorkItem

    return [WorkItem(Post(id=f"p{i}", text=t), SourceRef(topic="in", partition=0, offset=i))
            for i, t in enumerate(texts)]


@pytest.mark.parametrize("names", [("prescore", "rationale", "score"), ("judge", "explain", "rescore")])
def test_stage_bodies_gate_in_process(tmp_path, monkeypatch, names):
    """The three stage actors' bodies, called in this process: the prescore decides, the rationale
    and score processors see only the posts sent; every post comes out of each stage, in order.
    The roles are configuration (GateRole): the stages' names do not matter."""
    monkeypatch.setenv("LRSA_TEST_RECORD_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(TESTS))
    from workers.stages.api import GateRole
    from workers.stages.pool import StageWorker

    prescore = StageWorker(names[0], "stage_doubles:GateScoreDouble", gate=GateRole(decides=0.5))
    rationale = StageWorker(names[1], "stage_doubles:RecordingEchoProcessor", gate=GateRole(follows=True))
    rescore = StageWorker(names[2], "stage_doubles:GateScoreDouble", gate=GateRole(follows=True))
    items = _items("a is 0.2 sure", "b is 0.8 sure", "c is none sure none=0.3", "d is none sure",
                   "e is 0.5 sure", "f is 0.49 sure")
    from prometheus_client import REGISTRY

    def counted(decision: str) -> float:
        return REGISTRY.get_sample_value("lrsa_rationale_gate_posts_total", {"decision": decision}) or 0.0

    before = {d: counted(d) for d in ("rationale", "text_only")}
    for worker in (prescore, rationale, rescore):
        status, items = worker.process(items)
        assert status == "ok" and [it.post.id for it in items] == [f"p{i}" for i in range(6)]
    sent = ["p0", "p2", "p5"]
    assert {d: counted(d) - n for d, n in before.items()} == {"rationale": 3, "text_only": 3}
    assert [it.rationale_wanted for it in items] == [it.post.id in sent for it in items]
    assert (tmp_path / "rationale.txt").read_text().split() == sent
    scored = [line.split() for line in (tmp_path / "score.txt").read_text().splitlines()]
    assert scored == [[f"p{i}", "text"] for i in range(6)] + [[p, "rationale"] for p in sent]
    for it in items:
        was_sent = it.post.id in sent
        assert (names[1] in it.timings_ms) is was_sent and ("score" in it.timings_ms) is was_sent
        assert "prescore" in it.timings_ms and (it.rationale is not None) is was_sent
        assert ("rationale" in it.model_versions) is was_sent  # a skipped stage leaves no trace
        if it.aspects:
            assert it.aspects[0].sentiment == ("positive" if was_sent else "neutral")


def test_stage_bodies_without_a_gate_take_every_post(tmp_path, monkeypatch):
    monkeypatch.setenv("LRSA_TEST_RECORD_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(TESTS))
    from workers.stages.pool import StageWorker

    items = _items("a is 0.2 sure", "b is 0.9 sure")
    for worker in (StageWorker("rationale", "stage_doubles:RecordingEchoProcessor"),
                   StageWorker("score", "stage_doubles:GateScoreDouble")):
        status, items = worker.process(items)
    assert (tmp_path / "rationale.txt").read_text().split() == ["p0", "p1"]
    assert all(it.rationale_wanted is None and it.aspects[0].sentiment == "positive" for it in items)


# ---- the worker end to end ------------------------------------------------------------------------------

@pytest.mark.kafka
@pytest.mark.ray
def test_worker_sends_exactly_the_uncertain_posts_to_the_rationale_stage(kafka_bootstrap, kafka_topic, tmp_path):
    """`lrsa run --rationale-gate 0.5` on the real broker and a real local Ray: the recording
    rationale stage sees exactly the posts whose text-only certainty is below 0.5, each once; every
    post has exactly one result, with `rationale_used` and its aspects from the right scoring."""
    from streaming_helpers import ids_of, produce, read_all, start_worker, wait_exit

    records = tmp_path / "records"
    records.mkdir()
    levels = [f"{(i * 7919) % 101 / 100:.2f}" for i in range(60)] + ["none"] * 6
    # half the posts without aspects say their tagger hesitated (none=0.30: sent), half say nothing (certain)
    texts = {f"g{i:03d}": f"t{i} is {level} sure" + (" none=0.30" if level == "none" and i % 2 else "")
             for i, level in enumerate(levels)}
    expected_sent = {pid for pid, text in texts.items()
                     if post_certainty(*_double_prescore(text)) < 0.5}
    assert 10 < len(expected_sent) < 50
    topics = {"in": kafka_topic("gate-in", 2), "out": kafka_topic("gate-out", 2), "dlq": kafka_topic("gate-dlq", 1)}
    produce(kafka_bootstrap, topics["in"], [(pid.encode(), json.dumps({"id": pid, "text": t}).encode())
                                            for pid, t in texts.items()])
    log = tmp_path / "worker.log"
    worker = start_worker(kafka_bootstrap, topics, "gate", "--rationale-enabled", "--score-enabled",
                          "--rationale-processor", "stage_doubles:RecordingEchoProcessor",
                          "--score-processor", "stage_doubles:GateScoreDouble", "--rationale-gate", "0.5",
                          "--batch-size", "8", "--exit-when-idle", "3", log=log,
                          env={"LRSA_TEST_RECORD_DIR": str(records)})
    assert wait_exit(worker, 170, log) == 0

    sent = (records / "rationale.txt").read_text().split()
    assert sorted(sent) == sorted(expected_sent)  # exactly the uncertain posts, each once
    results = read_all(kafka_bootstrap, topics["out"])
    assert set(ids_of(results)) == set(texts) and max(ids_of(results).values()) == 1
    assert read_all(kafka_bootstrap, topics["dlq"]) == []
    for r in results:
        value = json.loads(r.value)
        was_sent = value["post_id"] in expected_sent
        assert value["rationale_used"] is was_sent
        assert (value["rationale"] is not None) is was_sent
        assert set(value["timings_ms"]) >= ({"prescore", "rationale", "score"} if was_sent else {"prescore"})
        assert ("score" in value["timings_ms"]) is was_sent
        if value["aspects"]:
            assert value["aspects"][0]["sentiment"] == ("positive" if was_sent else "neutral")
            assert value["aspects"][0]["entity"] == value["aspects"][0]["term"].casefold()  # contract v1.1
        # contract v1.1: the post's text, an event time from the record (no created_at), scored by the prescore
        assert value["text"] == texts[value["post_id"]] and value["scored"] is True
        assert value["event_time_source"] == "kafka_timestamp" and value["event_time"]
    rescored = [line.split() for line in (records / "score.txt").read_text().splitlines()]
    assert sorted(p for p, how in rescored if how == "rationale") == sorted(expected_sent)
    assert sorted(p for p, how in rescored if how == "text") == sorted(texts)


def _double_prescore(text: str) -> tuple[list[Aspect], float | None]:
    """What GateScoreDouble makes of a post without a rationale."""
    sys.path.insert(0, str(TESTS))
    try:
        from stage_doubles import GateScoreDouble
    finally:
        sys.path.remove(str(TESTS))
    (item,) = GateScoreDouble().process(_items(text))
    return item.aspects, item.no_aspect_certainty


# ---- lrsa bench gate-curve ---------------------------------------------------------------------------------

def test_gate_curve_on_a_tiny_checkpoint(tiny_checkpoint, data_dir, tmp_path):
    """The command's rows on 12 Twitter-2015 dev posts: threshold 0 is the text-only scoring, "all"
    the with-rationale one (both checked against the in-process Predictor), shares never fall."""
    from lrsa.predict import Predictor
    from lrsa_cli.gate_curve import GateCurveSettings, render, run_gate_curve
    from lrsa_cli.gold import split_to_gold

    gold = split_to_gold(data_dir, "twitter2015", "dev", limit=12)
    rationale_file = tmp_path / "rationales.jsonl"
    rationale_file.write_text("".join(json.dumps({"image_id": g.meta["image_id"], "text": g.text,
                                                  "rationale": f"the post talks about {g.text.split()[0]}"}) + "\n"
                                      for g in gold))
    s = GateCurveSettings(checkpoint=tiny_checkpoint, rationales=rationale_file, data_dir=data_dir,
                          thresholds="0,0.5,1", out=tmp_path / "curve.json")
    report = run_gate_curve(s)
    assert report["gold"]["posts"] == 12 and json.loads((tmp_path / "curve.json").read_text()) == report
    rows = report["rows"]
    assert [r["threshold"] for r in rows] == [0.0, 0.5, 1.0, None]
    assert rows[0]["share_sent"] == 0.0 and rows[-1]["share_sent"] == 1.0
    assert [r["share_sent"] for r in rows] == sorted(r["share_sent"] for r in rows)

    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    texts = [g.text for g in gold]
    rationales = [f"the post talks about {t.split()[0]}" for t in texts]

    def f1(predictions):
        return score(gold, [{"post_id": g.id, "aspects": [a.model_dump() for a in p]}
                            for g, p in zip(gold, predictions)])["jmasa"]["f1"]

    assert rows[0]["jmasa_f1"] == pytest.approx(f1(predictor.predict(texts)))
    assert rows[-1]["jmasa_f1"] == pytest.approx(f1(predictor.predict(texts, rationales)))
    assert "share" in render(report) and "all" in render(report)
    assert rows[0]["jmasa_f1_random_same_share"] == pytest.approx(rows[0]["jmasa_f1"])
    assert rows[-1]["jmasa_f1_random_same_share"] == pytest.approx(rows[-1]["jmasa_f1"])


def test_gate_curve_settings_check_thresholds():
    from lrsa.settings import SettingsError, settings_from_args
    from lrsa_cli.gate_curve import GateCurveSettings
    from lrsa_cli.main import build_parser

    parser = build_parser()
    for bad in ("0.5,1.2", "x", ""):
        with pytest.raises(SettingsError):
            settings_from_args(GateCurveSettings, parser.parse_args(
                ["bench", "gate-curve", "--rationales", "r.jsonl", "--thresholds", bad]))
    s = settings_from_args(GateCurveSettings, parser.parse_args(
        ["bench", "gate-curve", "--rationales", "r.jsonl", "--thresholds", "0, 0.25,1"]))
    assert s.threshold_list == [0.0, 0.25, 1.0]

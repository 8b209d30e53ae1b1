"""lrsa.quality on hand-made cases, and the MABSA -> gold converter."""

from __future__ import annotations

import json

import pytest

from lrsa.quality import GoldPost, load_gold, score, summary_line, write_gold
from lrsa_cli.gold import example_to_gold, split_to_gold

TEXT_A = "Chuck Bass is everything #MCM"  # Chuck Bass [0:10], MCM [26:29]
TEXT_B = "Donald Trump hotels have plummeted"  # Donald Trump [0:12]
GOLD = [
    {"id": "a", "text": TEXT_A, "aspects": [
        {"term": "Chuck Bass", "start": 0, "end": 10, "sentiment": "positive"},
        {"term": "MCM", "start": 26, "end": 29, "sentiment": "neutral"}]},
    {"id": "b", "text": TEXT_B, "aspects": [
        {"term": "Donald Trump", "start": 0, "end": 12, "sentiment": "negative"}]},
]


def asp(start, end, sentiment, term="x", confidence=0.9):
    return {"term": term, "start": start, "end": end, "sentiment": sentiment, "confidence": confidence}


def result(post_id, *aspects):
    return {"post_id": post_id, "aspects": list(aspects), "rationale": None}


def test_perfect_output_scores_100():
    r = score(GOLD, [result("a", asp(0, 10, "positive"), asp(26, 29, "neutral")),
                     result("b", asp(0, 12, "negative"))])
    assert r["jmasa"] == r["mate"] == {"precision": 100.0, "recall": 100.0, "f1": 100.0}
    assert r["masc"]["accuracy"] == 100.0 and r["masc"]["negative_recall"] == 100.0
    assert r["masc"]["macro_f1"] == 100.0  # every class present once and right
    assert r["posts"] == {"gold": 2, "scored": 2, "missing": 0, "duplicate_records": 0, "unknown": 0,
                          "missing_ids": [], "unknown_ids": []}


def test_exact_span_and_sentiment_rules():
    # a: right span wrong sentiment; span one character short; b: right span and sentiment
    r = score(GOLD, [result("a", asp(0, 10, "negative"), asp(26, 28, "neutral")),
                     result("b", asp(0, 12, "negative"))])
    assert r["aspects"] == {"gold": 3, "predicted": 3, "span_matches": 2, "pair_matches": 1,
                            "duplicate_spans": 0}
    assert r["jmasa"]["precision"] == pytest.approx(100 / 3) and r["jmasa"]["recall"] == pytest.approx(100 / 3)
    assert r["mate"]["precision"] == pytest.approx(200 / 3) and r["mate"]["f1"] == pytest.approx(200 / 3)
    # MASC on the 2 matched spans: Chuck Bass positive -> negative (wrong), Trump negative (right)
    masc = r["masc"]
    assert masc["spans"] == 2 and masc["accuracy"] == 50.0
    assert list(masc["per_class"]) == ["negative", "neutral", "positive"]
    assert masc["per_class"]["negative"] == {"precision": 50.0, "recall": 100.0,
                                             "f1": pytest.approx(200 / 3), "support": 1}
    assert masc["per_class"]["positive"]["recall"] == 0.0 and masc["per_class"]["positive"]["support"] == 1
    assert masc["per_class"]["neutral"]["support"] == 0  # MCM's span was not extracted exactly
    assert masc["macro_f1"] == pytest.approx((200 / 3) / 3)
    # the term text is not compared: the offsets are
    assert score(GOLD[1:], [result("b", asp(0, 12, "negative", term="whatever"))])["jmasa"]["f1"] == 100.0


def test_empty_outputs_and_empty_gold():
    r = score(GOLD, [result("a"), result("b")])
    assert r["jmasa"] == r["mate"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert r["masc"]["accuracy"] == 0.0 and r["masc"]["spans"] == 0
    assert r["posts"]["missing"] == 0 and r["aspects"]["predicted"] == 0
    none = score([{"id": "n", "text": "nothing here", "aspects": []}], [result("n", asp(0, 7, "neutral"))])
    assert none["aspects"] == {"gold": 0, "predicted": 1, "span_matches": 0, "pair_matches": 0,
                               "duplicate_spans": 0}
    assert none["jmasa"]["f1"] == 0.0
    assert score([], [])["jmasa"]["f1"] == 0.0


def test_missing_posts_count_as_empty_predictions():
    r = score(GOLD, [result("b", asp(0, 12, "negative"))])
    assert r["posts"]["missing"] == 1 and r["posts"]["missing_ids"] == ["a"] and r["posts"]["scored"] == 1
    assert r["jmasa"]["precision"] == 100.0 and r["jmasa"]["recall"] == pytest.approx(100 / 3)


def test_duplicate_records_are_counted_and_the_first_scored():
    r = score(GOLD, [result("a", asp(0, 10, "positive")),
                     result("a", asp(0, 10, "negative"), asp(26, 29, "neutral")),
                     result("b", asp(0, 12, "negative")), result("b"),
                     result("zzz", asp(0, 1, "positive"))])
    assert r["posts"]["duplicate_records"] == 2 and r["posts"]["unknown"] == 1
    assert r["posts"]["unknown_ids"] == ["zzz"]
    assert r["aspects"]["predicted"] == 2 and r["aspects"]["pair_matches"] == 2


def test_duplicate_spans_within_one_result_count_once():
    r = score(GOLD, [result("a", asp(0, 10, "positive"), asp(0, 10, "positive"), asp(0, 10, "negative")),
                     result("b", asp(0, 12, "negative"))])
    assert r["aspects"]["duplicate_spans"] == 2 and r["aspects"]["predicted"] == 2
    assert r["jmasa"]["precision"] == 100.0 and r["jmasa"]["recall"] == pytest.approx(200 / 3)


def test_results_as_schema_objects_and_summary_line():
    from lrsa.schemas import Result, SourceRef

    rec = Result(post_id="b", aspects=[asp(0, 12, "negative")], source=SourceRef(topic="t", partition=0, offset=0))
    r = score(GOLD[1:], [rec])
    assert r["jmasa"]["f1"] == 100.0
    assert "JMASA P/R/F1 100.0/100.0/100.0" in summary_line(r)


def test_gold_offsets_must_point_at_terms(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        GoldPost(id="x", text="hello world", aspects=[{"term": "world", "start": 0, "end": 5,
                                                        "sentiment": "positive"}])
    with pytest.raises(ValueError):  # unknown sentiment
        GoldPost(id="x", text="hello", aspects=[{"term": "hello", "start": 0, "end": 5, "sentiment": "POS"}])
    path = tmp_path / "gold.jsonl"
    assert write_gold(path, GOLD) == 2
    posts = load_gold(path)
    assert [p.id for p in posts] == ["a", "b"] and posts[0].aspects[1].term == "MCM"
    path.write_text(path.read_text() + json.dumps(GOLD[0]) + "\n")
    with pytest.raises(ValueError, match="twice"):
        load_gold(path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "text": 3}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_gold(bad)


def test_gold_post_is_a_valid_input_post():
    from lrsa.schemas import Post

    g = GoldPost(id="p", text=TEXT_B, lang="en", meta={"k": 1},
                 aspects=[{"term": "Donald Trump", "start": 0, "end": 12, "sentiment": "negative"}])
    post = Post.model_validate(g.post())
    assert (post.id, post.text, post.lang, post.meta) == ("p", TEXT_B, "en", {"k": 1})
    assert "aspects" not in g.post()


def test_converter_computes_char_offsets_and_maps_sentiments():
    words = ["RT", "@", "Chuck", ":", "Chuck", "Bass", "is", "everything", "#", "MCM"]
    g = example_to_gold(words, [(4, 6, "POS"), (8, 10, "NEU"), (0, 1, "NEG")], "p1", {"image_id": "1.jpg"})
    assert g.text == "RT @ Chuck : Chuck Bass is everything # MCM"
    assert [(a.term, a.start, a.end, a.sentiment) for a in g.aspects] == [
        ("Chuck Bass", 13, 23, "positive"), ("# MCM", 38, 43, "neutral"), ("RT", 0, 2, "negative")]
    assert g.meta == {"image_id": "1.jpg"}
    with pytest.raises(ValueError, match="outside"):
        example_to_gold(["a"], [(0, 2, "POS")], "p2")


def test_converter_on_a_split_folder(tmp_path):
    from test_training import write_dataset

    root = write_dataset(tmp_path, splits=("dev",), copies=(1,))
    gold = split_to_gold(root, "twitter2015", "dev", limit=3)
    assert [g.id for g in gold] == ["twitter2015-dev-00000", "twitter2015-dev-00001", "twitter2015-dev-00002"]
    assert gold[1].text == "Girona promoted to La Liga"
    assert [(a.term, a.sentiment) for a in gold[1].aspects] == [("Girona", "positive"), ("La Liga", "neutral")]
    assert gold[0].meta == {"dataset": "twitter2015", "split": "dev", "image_id": "dev0_0.jpg"}
    # the gold scores itself perfectly through the scorer
    results = [result(g.id, *[asp(a.start, a.end, a.sentiment) for a in g.aspects]) for g in gold]
    assert score(gold, results)["jmasa"]["f1"] == 100.0


@pytest.mark.data
def test_converter_on_the_real_dev_split(data_dir):
    gold = split_to_gold(data_dir, "twitter2015", "dev")
    assert len(gold) == 727 and all(g.aspects for g in gold[:50])

"""The dashboard's view (dashboard/view.py): upserts, alert episodes, post records, bad input."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.view import DashboardView


def agg(entity: str = "Delta Air Lines", start: str = "2026-12-04T10:00:00Z", pos: int = 1, neu: int = 0,
        neg: int = 0, **kw) -> bytes:
    mentions = pos + neu + neg
    return json.dumps({"schema_version": "1.0", "entity": entity, "window": "1m", "window_start": start,
                       "window_end": start.replace(":00:00Z", ":01:00Z"),
                       "counts": {"positive": pos, "neutral": neu, "negative": neg}, "mentions": mentions,
                       "mean_confidence": 0.8, "net_sentiment": (pos - neg) / mentions if mentions else 0.0,
                       "example_post_ids": ["p1"], "updated_at": start, **kw}).encode()


def alert(kind: str = "fired", entity: str = "Delta Air Lines", direction: str = "negative") -> bytes:
    return json.dumps({"schema_version": "1.0", "type": kind, "entity": entity, "direction": direction,
                       "window": "1m", "window_start": "2026-12-04T10:05:00Z", "share": 0.7, "baseline_share": 0.2,
                       "z": 4.2, "counts": {"positive": 1, "neutral": 2, "negative": 7},
                       "baseline_counts": {"positive": 30, "neutral": 40, "negative": 18}, "post_ids": ["p9"],
                       "rationales": ["angry about bags"], "episode_id": "e1", "at": "2026-12-04T10:06:00Z"}).encode()


def test_a_later_record_of_the_same_window_replaces_it() -> None:
    view = DashboardView()
    view.apply("aggregate", b"k", agg(pos=1))
    event = view.apply("aggregate", b"k", agg(pos=3, neg=2))
    assert event["type"] == "aggregate" and event["record"]["counts"] == {"positive": 3, "neutral": 0, "negative": 2}
    (only,) = view.snapshot()["aggregates"]
    assert only["mentions"] == 5


def test_history_is_bounded_per_entity_and_entities_are_bounded() -> None:
    view = DashboardView(history_windows=3, max_entities=2)
    for minute in range(5):
        view.apply("aggregate", None, agg(start=f"2026-12-04T10:0{minute}:00Z"))
    starts = sorted(r["window_start"] for r in view.snapshot()["aggregates"])
    assert starts == ["2026-12-04T10:02:00Z", "2026-12-04T10:03:00Z", "2026-12-04T10:04:00Z"]
    view.apply("aggregate", None, agg(entity="b"))
    view.apply("aggregate", None, agg(entity="c"))
    assert {r["entity"] for r in view.snapshot()["aggregates"]} == {"b", "c"}


def test_tombstone_removes_the_window() -> None:
    view = DashboardView()
    view.apply("aggregate", None, agg(entity="x"))
    event = view.apply("aggregate", b"x|1m|2026-12-04T10:00:00Z", None)
    assert event["type"] == "aggregate_removed" and view.snapshot()["aggregates"] == []


def test_alert_episode_is_active_until_resolved() -> None:
    view = DashboardView()
    view.apply("alert", None, alert("fired"))
    assert [a["entity"] for a in view.snapshot()["active"]] == ["Delta Air Lines"]
    view.apply("alert", None, alert("resolved"))
    snap = view.snapshot()
    assert snap["active"] == [] and [a["type"] for a in snap["alerts"]] == ["fired", "resolved"]


def test_post_keeps_text_and_only_spans_that_index_into_it() -> None:
    view = DashboardView(recent_posts=2)
    text = "<script>alert(1)</script> Delta lost my bag"
    result = {"schema_version": "1.1", "post_id": "p1", "text": text, "rationale": "<b>r</b>",
              "aspects": [{"term": "Delta", "start": 26, "end": 31, "sentiment": "negative", "confidence": 0.9,
                           "entity": "Delta Air Lines"},
                          {"term": "bogus", "start": 0, "end": 5, "sentiment": "neutral", "confidence": 0.5}],
              "source": {"topic": "r", "partition": 0, "offset": 1}}
    event = view.apply("post", b"p1", json.dumps(result).encode())
    assert event["record"]["text"] == text  # kept verbatim: the page sets it as text
    assert [a["term"] for a in event["record"]["aspects"]] == ["Delta"]
    for i in range(3):
        view.apply("post", None, json.dumps({**result, "post_id": f"q{i}"}).encode())
    assert list(view.posts) == ["q1", "q2"] and view.post("p1") is None


def test_a_long_post_is_shown_cut_with_the_aspects_inside_the_cut() -> None:
    from dashboard.view import MAX_TEXT

    text = "Delta " + "x" * MAX_TEXT + " Delta"
    aspects = [{"term": "Delta", "start": 0, "end": 5, "sentiment": "negative"},
               {"term": "Delta", "start": len(text) - 5, "end": len(text), "sentiment": "negative"}]
    event = DashboardView().apply("post", None, json.dumps({"post_id": "p", "text": text, "aspects": aspects}).encode())
    assert len(event["record"]["text"]) == MAX_TEXT and [a["start"] for a in event["record"]["aspects"]] == [0]


def test_bad_records_are_counted_not_raised() -> None:
    view = DashboardView()
    bad = [b"not json", b"[]", b'{"entity": ""}', agg(mentions=-1), agg(start="yesterday"),
           b'{"entity":"x","window":"1m","window_start":"2026-12-04T10:00:00Z","counts":{},"mentions":1,'
           b'"net_sentiment":NaN}']
    for value in bad:
        assert view.apply("aggregate", None, value) is None
    assert view.apply("aggregate", b"no-pipes", None) is None
    assert view.apply("alert", None, b'{"type":"exploded"}') is None
    assert view.skipped == {"aggregate": len(bad) + 1, "alert": 1}
    json.dumps(view.snapshot(), allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["aggregate", "alert", "post"]), key=st.one_of(st.none(), st.binary(max_size=40)),
       value=st.one_of(st.none(), st.binary(max_size=200),
                       st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
                                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                                    max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_any_record_is_applied_or_skipped_and_the_snapshot_stays_valid_json(kind, key, value) -> None:
    view = DashboardView()
    view.apply(kind, key, value)
    json.dumps(view.snapshot(), allow_nan=False)

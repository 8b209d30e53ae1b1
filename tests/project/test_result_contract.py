"""Result contract v1.1 (issue 21): new optional fields, v1.0 records still parse, and the worker's
result builder (event time and its source, text on/off, entity keys, scored/truncated flags)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest

from lrsa.event_time import event_time
from lrsa.schemas import RESULT_SCHEMA_VERSION, Aspect, Post, Result, SourceRef
from workers.config import WorkerSettings
from workers.ingest.result_build import build_result
from workers.stages.api import WorkItem
from repo_paths import REPO

ROOT = REPO
ALIASES = ROOT / "deploy" / "entities.aliases.yaml"
SRC = SourceRef(topic="posts", partition=1, offset=7)
# a record as the v1.0 worker wrote it (before event time, text, entity, scored existed)
V10_RECORD = {"schema_version": "1.0", "post_id": "p1",
              "aspects": [{"term": "Delta", "start": 0, "end": 5, "sentiment": "negative", "confidence": 0.8}],
              "rationale": "r", "model": {"slm": "x"}, "timings_ms": {"score": 3.0},
              "source": {"topic": "posts", "partition": 0, "offset": 3}, "rationale_used": True}


def _item(text: str = "Delta lost my bag again", created_at: str | None = None, ts_ms: int | None = 1_764_842_400_000,
          aspects: list[Aspect] | None = None, **post: object) -> WorkItem:
    p = Post.model_validate({"id": "p", "text": text, "created_at": created_at, **post})
    return WorkItem(post=p, source=SRC, kafka_timestamp_ms=ts_ms, aspects=aspects)


def _settings(**kw: object) -> WorkerSettings:
    return WorkerSettings(**kw)


def test_v10_record_still_parses_and_is_read_as_scored() -> None:
    r = Result.model_validate_json(json.dumps(V10_RECORD))
    assert r.schema_version == "1.0" and r.aspects[0].entity is None
    assert r.scored is True  # its score stage timed it
    assert r.event_time is None and r.text is None and r.truncated is False
    unscored = Result.model_validate({**V10_RECORD, "aspects": [], "timings_ms": {}})
    assert unscored.scored is False


def test_v10_record_validates_against_both_schema_files() -> None:
    for version in ("1.0", RESULT_SCHEMA_VERSION):
        schema = json.loads((ROOT / "schemas" / f"result.v{version}.schema.json").read_text())
        jsonschema.validate(V10_RECORD, schema)


def test_v11_round_trip_through_json_and_the_schema_file() -> None:
    item = _item("Delta's crew was great", created_at="2026-12-04T10:00:05+01:00", lang="en",
                 meta={"src": "x"}, likes=4,
                 aspects=[Aspect(term="Delta", start=0, end=5, sentiment="positive", confidence=0.9)])
    item.truncated = False
    r = build_result(item, _settings(entity_aliases=ALIASES))
    data = json.loads(r.model_dump_json())
    assert data["schema_version"] == "1.1" == RESULT_SCHEMA_VERSION
    assert data["event_time"] == "2026-12-04T09:00:05Z" and data["event_time_source"] == "created_at"
    assert data["lang"] == "en" and data["text"] == "Delta's crew was great"
    assert data["meta"] == {"likes": 4, "src": "x"}
    assert data["aspects"][0]["entity"] == "Delta Air Lines" and data["aspects"][0]["term"] == "Delta"
    assert data["scored"] is True and data["truncated"] is False
    jsonschema.validate(data, json.loads((ROOT / "schemas" / "result.v1.1.schema.json").read_text()))
    assert Result.model_validate_json(r.model_dump_json()) == r


def test_event_time_source_is_created_at_else_the_kafka_timestamp() -> None:
    with_created = build_result(_item(created_at="2026-12-04T10:00:00Z", ts_ms=1), _settings())
    assert with_created.event_time_source == "created_at"
    assert with_created.event_time == datetime(2026, 12, 4, 10, tzinfo=timezone.utc)
    without = build_result(_item(created_at=None, ts_ms=1_764_842_400_123), _settings())
    assert without.event_time_source == "kafka_timestamp"
    assert without.event_time == datetime.fromtimestamp(1_764_842_400.123, tz=timezone.utc)
    neither = build_result(_item(created_at=None, ts_ms=-1), _settings())
    assert neither.event_time is None and neither.event_time_source is None


def test_event_time_never_raises_on_extreme_values() -> None:
    assert event_time(datetime(1, 1, 1, tzinfo=timezone.utc).replace(
        tzinfo=datetime.fromisoformat("2000-01-01T00:00+05:00").tzinfo), None)[1] == "created_at"
    assert event_time(None, 10**20) == (None, None)
    naive = event_time(datetime(2026, 1, 1, 12), None)[0]
    assert naive == datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def test_text_is_left_out_by_the_setting() -> None:
    assert build_result(_item("hello Delta"), _settings()).text == "hello Delta"
    r = build_result(_item("hello Delta"), _settings(result_text=False))
    assert r.text is None and "hello" not in r.model_dump_json()


def test_scored_tells_none_found_from_not_scored() -> None:
    not_scored = build_result(_item(aspects=None), _settings())
    none_found = build_result(_item(aspects=[]), _settings())
    assert not_scored.aspects == none_found.aspects == []
    assert not_scored.scored is False and none_found.scored is True


def test_truncated_flag_follows_the_score_stage() -> None:
    item = _item(aspects=[])
    item.truncated = True
    assert build_result(item, _settings()).truncated is True
    assert build_result(_item(aspects=[]), _settings()).truncated is False


def test_entity_without_aliases_is_the_folded_term() -> None:
    item = _item("#Netflix's prices", aspects=[Aspect(term="#Netflix's", start=0, end=10, sentiment="negative",
                                                      confidence=0.7)])
    assert build_result(item, _settings()).aspects[0].entity == "netflix"


def test_a_bad_alias_file_stops_the_worker_settings(tmp_path: Path) -> None:
    bad = tmp_path / "aliases.yaml"
    bad.write_text("A: [x]\nB: [x]\n")
    with pytest.raises(ValueError, match="names two entities"):
        _settings(entity_aliases=bad)


def test_truncation_is_measured_against_the_models_token_limit(tmp_path: Path) -> None:
    from lrsa.model import tiny_test_checkpoint
    from lrsa.predict import Predictor, encode_batch

    p = Predictor.from_checkpoint(tiny_test_checkpoint(tmp_path))
    limit = p.model.config.max_text_len
    n_tokens = lambda t: len(p.tokenizer(t.split(), is_split_into_words=True)["input_ids"])  # noqa: E731
    fits = " ".join(["ok"] * 3)
    exact = fits
    while n_tokens(exact + " ok") <= limit:
        exact += " ok"
    assert n_tokens(exact) == limit  # fills the limit exactly: not cut
    cut = exact + " ok"
    _, meta = encode_batch(p.tokenizer, p.model.config, [fits, exact, cut])
    assert [m.truncated for m in meta] == [False, False, True]

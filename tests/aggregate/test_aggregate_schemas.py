"""The aggregates/alerts topic contracts: the schema files match the models, and the models hold
the records the aggregator and the detector make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lrsa.aggregates import (AggregateRecord, aggregate_key, aggregate_record, mentions_of, parse_windows,
                             window_add, window_init)
from lrsa.cli import contract_schemas
from repo_paths import REPO

SCHEMAS = REPO / "schemas"


def test_schema_files_match_the_models_and_lrsa_schemas_writes_every_contract(tmp_path):
    """`lrsa schemas` writes every current contract (posts, results, dead letters, aggregates,
    alerts), each equal to the committed file; a committed file it does not write is an older
    version of one it does (result.v1.0 beside result.v1.1)."""
    from lrsa_cli.main import main

    assert main(["schemas", "--out", str(tmp_path)]) == 0
    written = {p.name for p in tmp_path.iterdir()}
    assert written == set(contract_schemas()) and {"aggregate", "alert", "post", "result", "dead_letter"} == \
        {n.split(".v")[0] for n in written}
    for name in written:
        assert json.loads((SCHEMAS / name).read_text()) == json.loads((tmp_path / name).read_text()), \
            f"regenerate schemas/{name} (lrsa schemas)"
    for older in {p.name for p in SCHEMAS.glob("*.schema.json")} - written:
        assert older.split(".v")[0] in {n.split(".v")[0] for n in written}, older


def test_aggregate_record_from_mentions():
    result = {"post_id": "p1", "rationale": "late again", "aspects": [
        {"term": "Delta", "entity": "Delta Air Lines", "sentiment": "negative", "confidence": 0.9},
        {"term": "@united", "sentiment": "positive", "confidence": 0.5},
        {"term": "x", "sentiment": "unknown"}, "junk"]}
    ms = mentions_of(result)
    assert [(m["entity"], m["sentiment"]) for m in ms][0] == ("Delta Air Lines", "negative")
    assert len(ms) == 2  # the unknown sentiment and the non-object are skipped
    acc = window_add(window_add(window_init(), ms[0]), {**ms[0], "post_id": "p2", "sentiment": "positive",
                                                        "confidence": 0.7})
    rec = aggregate_record(acc, "1m", 1_767_225_600_000, 1_767_225_660_000, 1_767_225_700_123)
    AggregateRecord.model_validate(rec)
    assert rec["window_start"] == "2026-01-01T00:00:00Z" and rec["window_end"] == "2026-01-01T00:01:00Z"
    assert rec["counts"] == {"positive": 1, "neutral": 0, "negative": 1} and rec["mentions"] == 2
    assert rec["mean_confidence"] == pytest.approx(0.8) and rec["net_sentiment"] == 0.0
    assert rec["example_post_ids"] == ["p1", "p2"] and rec["updated_at"] == "2026-01-01T00:01:40.123Z"
    assert aggregate_key("Delta Air Lines", "1m", 1_767_225_600_000) == "Delta Air Lines|1m|2026-01-01T00:00:00Z"
    with pytest.raises(ValidationError):
        AggregateRecord.model_validate({**rec, "extra": 1})


def test_entity_keys_cannot_hold_the_key_separator():
    ms = mentions_of({"post_id": "p", "aspects": [{"entity": "A|B", "sentiment": "neutral"},
                                                  {"term": "C|D", "sentiment": "neutral"}]})
    assert [m["entity"] for m in ms][0] == "A/B" and "|" not in ms[1]["entity"]


def test_not_a_result_gives_no_mentions():
    for bad in (None, [], "x", {"aspects": "x"}, {"scored": False, "aspects": [{"term": "a", "sentiment": "negative"}]}):
        assert mentions_of(bad) == []


def test_window_sizes():
    assert parse_windows("1m, 1h,1m") == [("1m", 60_000), ("1h", 3_600_000)]
    for bad in ("", "0m", "1x", "m"):
        with pytest.raises(ValueError):
            parse_windows(bad)

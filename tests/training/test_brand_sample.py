"""The demo's brand stream sample (samples/brand_stream.jsonl, scripts/make_brand_sample.py) and
the per-entity table `lrsa demo` prints (lrsa_cli/brand_table.py). Pure: no Kafka, no model."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime
from pathlib import Path

from lrsa.entities import EntityNormaliser
from lrsa.schemas import Post
from lrsa_cli.brand_table import entity_table, format_table
from repo_paths import REPO

ROOT = REPO
SAMPLE = ROOT / "samples" / "brand_stream.jsonl"
ALIASES = ROOT / "deploy" / "entities.aliases.yaml"


def _generator():
    spec = importlib.util.spec_from_file_location("make_brand_sample", ROOT / "scripts" / "make_brand_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _posts() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def _gold_results(posts: list[dict]) -> list[dict]:
    """The sample as if a perfect model had scored it: its planted aspects, aliases applied."""
    norm = EntityNormaliser.from_file(ALIASES)
    return [{"post_id": p["id"], "event_time": p["created_at"], "scored": True, "rationale": "",
             "aspects": [{**a, "entity": norm(a["term"]), "confidence": 0.9} for a in p["aspects"]]}
            for p in posts]


def test_sample_is_what_the_generator_writes() -> None:
    gen = _generator()
    assert SAMPLE.read_text(encoding="utf-8") == gen.render(gen.generate())


def test_sample_size_entities_time_span_and_valid_posts() -> None:
    posts = _posts()
    assert len(posts) >= 300
    assert len({p["id"] for p in posts}) == len(posts)
    for p in posts:
        Post.model_validate(p)
        for a in p["aspects"]:
            assert p["text"][a["start"]:a["end"]] == a["term"]
    norm = EntityNormaliser.from_file(ALIASES)
    entities = {norm(a["term"]) for p in posts for a in p["aspects"]}
    assert len(entities) >= 25
    # aliases fold the Delta variants onto one entity
    assert {a["term"] for p in posts for a in p["aspects"] if norm(a["term"]) == "Delta Air Lines"} >= {"Delta", "Delta Airlines"}
    times = sorted(datetime.fromisoformat(p["created_at"].replace("Z", "+00:00")) for p in posts)
    assert (times[-1] - times[0]).total_seconds() >= 4 * 3600


def test_planted_shift_is_visible() -> None:
    gen = _generator()
    norm = EntityNormaliser.from_file(ALIASES)
    shift_at = gen.SHIFT_AT.strftime("%Y-%m-%dT%H:%M:%SZ")

    def neg_share(entity: str, after: bool) -> tuple[float, int]:
        s = [a["sentiment"] for p in _posts() if (p["created_at"] >= shift_at) == after
             for a in p["aspects"] if norm(a["term"]) == entity]
        return s.count("negative") / len(s), len(s)

    before, n_before = neg_share(gen.SHIFT_ENTITY, False)
    after, n_after = neg_share(gen.SHIFT_ENTITY, True)
    assert n_before >= 20 and n_after >= 20
    assert after - before >= 0.5, (before, after)


def test_table_of_the_sample_alerts_on_the_shifted_brand_only() -> None:
    gen = _generator()
    rows = entity_table(_gold_results(_posts()))
    by = {r["entity"]: r for r in rows}
    assert rows[0]["entity"] == gen.SHIFT_ENTITY  # the most mentioned
    assert by[gen.SHIFT_ENTITY]["alerts"] == 1
    assert by[gen.SHIFT_ENTITY]["alert_windows"][0].startswith("negative from 2026-11-29T1")
    assert [r["entity"] for r in rows if r["alerts"]] == [gen.SHIFT_ENTITY]
    assert sum(r["mentions"] for r in rows) == sum(len(p["aspects"]) for p in _posts())


def _result(pid: str, at: str | None, *aspects: tuple[str, str]) -> dict:
    return {"post_id": pid, "event_time": at, "scored": True, "rationale": f"why {pid}",
            "aspects": [{"term": t, "entity": t, "sentiment": s, "confidence": 0.8} for t, s in aspects]}


def test_table_rows_from_hand_made_results() -> None:
    results = [
        _result("1", "2026-11-29T08:10:00Z", ("Acme", "positive"), ("Bolt", "negative")),
        _result("2", "2026-11-29T08:20:00Z", ("Acme", "neutral")),
        _result("3", None, ("Bolt", "negative"), ("Acme", "negative")),
        {"post_id": "4", "scored": False, "aspects": [{"term": "Acme", "entity": "Acme", "sentiment": "positive"}]},
        "not a record",
        _result("5", "2026-11-29T09:00:00Z", ("Cora", "bogus")),
    ]
    rows = entity_table(results)
    assert [{k: r[k] for k in ("entity", "mentions", "positive", "neutral", "negative", "alerts")} for r in rows] == [
        {"entity": "Acme", "mentions": 3, "positive": 1, "neutral": 1, "negative": 1, "alerts": 0},
        {"entity": "Bolt", "mentions": 2, "positive": 0, "neutral": 0, "negative": 2, "alerts": 0},
    ]
    text = format_table(rows)
    assert text.splitlines()[2].split() == ["Acme", "3", "1", "1", "1", "0"]


def test_table_counts_a_shift_alert_from_event_time_windows() -> None:
    results = []
    for hour in range(8, 12):  # 10 mentions an hour: 1 negative before 11:00, 9 from 11:00
        for i in range(10):
            sentiment = "negative" if (hour >= 11 and i < 9) or (hour < 11 and i == 0) else "positive"
            results.append(_result(f"{hour}-{i}", f"2026-11-29T{hour:02d}:{i * 5:02d}:00Z", ("Acme", sentiment)))
    results.reverse()  # arrival order does not matter: windows go by event time
    [row] = entity_table(results)
    assert (row["mentions"], row["positive"], row["negative"], row["alerts"]) == (40, 28, 12, 1)
    assert row["alert_windows"] == ["negative from 2026-11-29T11:00:00Z"]
    assert "alert: Acme: negative from 2026-11-29T11:00:00Z" in format_table([row])

"""Brand-monitoring aggregates (pure: no Kafka): a result record -> one mention per aspect, the
per-entity window accumulator, and the aggregate record the `lrsa.aggregates` topic carries.

The stream adapter (workers/aggregate/service.py) runs these inside Quix Streams' windowed reduce, so
the window state they build lives in RocksDB with a changelog topic.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AGGREGATE_SCHEMA_VERSION = "1.0"
SENTIMENTS = ("positive", "neutral", "negative")
EXAMPLE_IDS = 5           # example post ids an aggregate carries
EVIDENCE_PER_SIDE = 10    # post ids + rationales kept per window for each direction (alert evidence)

_WINDOW_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_windows(spec: str) -> list[tuple[str, int]]:
    """'1m,1h' -> [('1m', 60000), ('1h', 3600000)]: label and size in ms, whole seconds only."""
    out: list[tuple[str, int]] = []
    for part in (p for p in spec.split(",") if p.strip()):
        m = _WINDOW_RE.match(part)
        if not m or int(m.group(1)) <= 0:
            raise ValueError(f"window size {part!r}: expected a positive number and s|m|h|d, e.g. 1m")
        label = f"{int(m.group(1))}{m.group(2)}"
        if label not in (lbl for lbl, _ in out):
            out.append((label, int(m.group(1)) * _UNIT_S[m.group(2)] * 1000))
    if not out:
        raise ValueError("no window sizes given")
    return out


def iso_ms(ms: int) -> str:
    """Epoch ms -> ISO 8601 UTC with a Z, whole seconds unless the ms are not zero."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time_ms(value: Any) -> int | None:
    """ISO 8601 (Z or offset; naive means UTC) -> epoch ms; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def event_time_ms(result: Any, kafka_timestamp_ms: int) -> int:
    """The result's `event_time` (contract v1.1) when it has a readable one, else the record's."""
    if isinstance(result, dict):
        ms = parse_time_ms(result.get("event_time"))
        if ms is not None:
            return ms
    return kafka_timestamp_ms


def _fold(term: str) -> str:
    return " ".join(term.split()).casefold()


try:  # the entity normaliser of contract v1.1 (lrsa/entities.py), when this checkout has it
    from lrsa.entities import normalise as _normalise  # type: ignore[attr-defined]
except ImportError:  # older checkouts: case and whitespace folding only
    _normalise = _fold


def entity_of(aspect: dict) -> str | None:
    """`aspect["entity"]` when the result carries one, else its normalised `term`. A `|` becomes
    `/`: the topic keys are `entity|window|window_start` and `entity|direction`."""
    entity = aspect.get("entity")
    if isinstance(entity, str) and entity.strip():
        return entity.strip().replace("|", "/")
    term = aspect.get("term")
    if isinstance(term, str) and term.strip():
        try:
            key = _normalise(term)
        except Exception:  # a normaliser that fails on odd input must not lose the mention
            key = _fold(term)
        return key.replace("|", "/") or None
    return None


def mentions_of(result: Any) -> list[dict]:
    """One mention per scored aspect with a known sentiment; [] for anything else (never raises).

    A mention: {"entity", "sentiment", "confidence", "post_id", "rationale"}.
    """
    if not isinstance(result, dict) or result.get("scored") is False:
        return []
    aspects = result.get("aspects")
    if not isinstance(aspects, list):
        return []
    post_id = result.get("post_id")
    post_id = str(post_id) if post_id is not None else ""
    rationale = result.get("rationale") if isinstance(result.get("rationale"), str) else ""
    out = []
    for a in aspects:
        if not isinstance(a, dict) or a.get("sentiment") not in SENTIMENTS:
            continue
        entity = entity_of(a)
        if entity is None:
            continue
        conf = a.get("confidence")
        conf = float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) else None
        out.append({"entity": entity, "sentiment": a["sentiment"], "confidence": conf,
                    "post_id": post_id, "rationale": rationale})
    return out


def window_init() -> dict:
    """The empty window accumulator (JSON-serialisable: it is the window's stored state)."""
    return {"entity": "", "counts": {s: 0 for s in SENTIMENTS}, "conf_sum": 0.0, "conf_n": 0,
            "examples": [], "evidence": {"negative": [], "positive": []}}


def window_add(acc: dict, mention: dict) -> dict:
    """Add one mention to a window accumulator (returns the same, updated dict)."""
    acc["entity"] = mention["entity"]
    acc["counts"][mention["sentiment"]] += 1
    if mention["confidence"] is not None:
        acc["conf_sum"] += mention["confidence"]
        acc["conf_n"] += 1
    if len(acc["examples"]) < EXAMPLE_IDS and mention["post_id"] not in acc["examples"]:
        acc["examples"].append(mention["post_id"])
    side = acc["evidence"].get(mention["sentiment"])
    if side is not None and len(side) < EVIDENCE_PER_SIDE:
        side.append([mention["post_id"], mention["rationale"][:500]])
    return acc


class SentimentCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    positive: int = Field(ge=0)
    neutral: int = Field(ge=0)
    negative: int = Field(ge=0)


class AggregateRecord(BaseModel):
    """One entity's window on the compacted `lrsa.aggregates` topic, keyed
    `entity|window|window_start`; a later record with the same key replaces it (upsert)."""

    model_config = ConfigDict(extra="forbid", title="LRSA entity window aggregate")
    schema_version: Literal["1.0"] = AGGREGATE_SCHEMA_VERSION
    entity: str
    window: str = Field(description="window size label, e.g. 1m or 1h")
    window_start: str = Field(description="ISO 8601 UTC, inclusive")
    window_end: str = Field(description="ISO 8601 UTC, exclusive")
    counts: SentimentCounts
    mentions: int = Field(ge=0, description="positive + neutral + negative")
    mean_confidence: float = Field(description="mean aspect confidence (0 when none carried one)")
    net_sentiment: float = Field(ge=-1, le=1, description="(positive - negative) / mentions")
    example_post_ids: list[str]
    updated_at: str = Field(description="ISO 8601 UTC wall-clock time of this update")


def aggregate_record(acc: dict, label: str, start_ms: int, end_ms: int, now_ms: int) -> dict:
    counts = dict(acc["counts"])
    n = sum(counts.values())
    return {
        "schema_version": AGGREGATE_SCHEMA_VERSION,
        "entity": acc["entity"],
        "window": label,
        "window_start": iso_ms(start_ms),
        "window_end": iso_ms(end_ms),
        "counts": counts,
        "mentions": n,
        "mean_confidence": round(acc["conf_sum"] / acc["conf_n"], 6) if acc["conf_n"] else 0.0,
        "net_sentiment": round((counts["positive"] - counts["negative"]) / n, 6) if n else 0.0,
        "example_post_ids": list(acc["examples"]),
        "updated_at": iso_ms(now_ms),
    }


def aggregate_key(entity: str, label: str, start_ms: int) -> str:
    return f"{entity}|{label}|{iso_ms(start_ms)}"

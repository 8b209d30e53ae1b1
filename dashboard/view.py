"""The dashboard's view of the three topics: entity windows, alerts, latest posts.

Records are validated into known shapes before they reach a browser (numbers are numbers, strings
are bounded, no NaN); a record that does not validate is counted and skipped, never raised. Text
stays text: escaping is the page's job (it only ever sets textContent), and the page's Content
Security Policy refuses inline scripts besides.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Sentiment = Literal["positive", "neutral", "negative"]
MAX_TEXT = 10_000
MAX_LABEL = 300
ALERT_HISTORY = 200


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


def _iso_ms(value: str) -> int:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


class Counts(_Lenient):
    positive: int = Field(0, ge=0)
    neutral: int = Field(0, ge=0)
    negative: int = Field(0, ge=0)


class AggregateView(_Lenient):
    entity: str = Field(min_length=1, max_length=MAX_LABEL)
    window: str = Field(min_length=1, max_length=20)
    window_start: str = Field(max_length=64)
    window_end: str | None = Field(None, max_length=64)
    counts: Counts
    mentions: int = Field(ge=0)
    mean_confidence: float | None = None
    net_sentiment: float | None = None
    example_post_ids: list[str] = Field(default_factory=list, max_length=50)
    updated_at: str | None = Field(None, max_length=64)
    start_ms: int = 0

    @field_validator("window_start")
    @classmethod
    def _readable(cls, v: str) -> str:
        _iso_ms(v)
        return v

    def model_post_init(self, _context: Any) -> None:
        self.start_ms = _iso_ms(self.window_start)
        self.example_post_ids = [str(p)[:MAX_LABEL] for p in self.example_post_ids]


class AlertView(_Lenient):
    type: Literal["fired", "resolved"]
    entity: str = Field(min_length=1, max_length=MAX_LABEL)
    direction: Literal["negative", "positive"]
    window: str | None = Field(None, max_length=20)
    window_start: str | None = Field(None, max_length=64)
    share: float | None = None
    baseline_share: float | None = None
    z: float | None = None
    counts: Counts | None = None
    baseline_counts: Counts | None = None
    post_ids: list[str] = Field(default_factory=list, max_length=100)
    rationales: list[str] = Field(default_factory=list, max_length=100)
    episode_id: str | None = Field(None, max_length=MAX_LABEL)
    at: str | None = Field(None, max_length=64)

    def model_post_init(self, _context: Any) -> None:
        self.rationales = [r[:2000] for r in self.rationales]


class AspectView(_Lenient):
    term: str = Field(max_length=MAX_TEXT)
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    sentiment: Sentiment
    confidence: float | None = None
    entity: str | None = Field(None, max_length=MAX_LABEL)


class PostView(_Lenient):
    post_id: str = Field(min_length=1, max_length=MAX_LABEL)
    text: str | None = Field(None, max_length=MAX_TEXT)
    aspects: list[AspectView] = Field(default_factory=list, max_length=200)
    rationale: str | None = Field(None, max_length=MAX_TEXT)
    event_time: str | None = Field(None, max_length=64)
    lang: str | None = Field(None, max_length=32)
    scored: bool | None = None

    @field_validator("text", mode="before")
    @classmethod
    def _cut(cls, v: Any) -> Any:
        return v[:MAX_TEXT] if isinstance(v, str) else v  # a longer text is shown cut, not dropped

    def model_post_init(self, _context: Any) -> None:
        # only spans that index into the text given (a result without text keeps its terms)
        n = len(self.text) if self.text is not None else None
        self.aspects = [a for a in self.aspects
                        if a.end > a.start and (n is None or (a.end <= n and self.text[a.start:a.end] == a.term))]


def _loads(value: bytes | None) -> Any:
    if value is None:
        return None
    return json.loads(value)


class DashboardView:
    """What the page shows, updated record by record; `snapshot()` for a browser that connects."""

    def __init__(self, history_windows: int = 360, max_entities: int = 5000, recent_posts: int = 200) -> None:
        self.history_windows, self.max_entities, self.recent_posts = history_windows, max_entities, recent_posts
        self.windows: OrderedDict[str, dict[str, dict[int, dict]]] = OrderedDict()  # entity -> size -> start -> rec
        self.alerts: deque[dict] = deque(maxlen=ALERT_HISTORY)
        self.active: dict[tuple[str, str], dict] = {}
        self.posts: OrderedDict[str, dict] = OrderedDict()
        self.skipped: Counter[str] = Counter()  # records that did not validate, by kind

    # ---- records ---------------------------------------------------------------------------

    def apply(self, kind: str, key: bytes | None, value: bytes | None) -> dict | None:
        """One record of topic `kind` ("aggregate" | "alert" | "post") -> the event to push, or None."""
        try:
            data = _loads(value)
            if kind == "aggregate":
                return self._aggregate(key, data)
            if kind == "alert":
                return self._alert(data)
            if kind == "post":
                return self._post(data)
        except (ValueError, TypeError, ValidationError, RecursionError):
            pass
        self.skipped[kind] += 1
        return None

    def _aggregate(self, key: bytes | None, data: Any) -> dict | None:
        if data is None:  # a tombstone: that window is gone from the compacted topic
            entity, size, start = (key or b"").decode("utf-8", "replace").rsplit("|", 2)
            start_ms = _iso_ms(start)
            removed = self.windows.get(entity, {}).get(size, {}).pop(start_ms, None)
            return {"type": "aggregate_removed", "entity": entity, "window": size, "window_start": start,
                    "start_ms": start_ms} if removed else None
        rec = AggregateView.model_validate(data).model_dump()
        sizes = self.windows.setdefault(rec["entity"], {})
        self.windows.move_to_end(rec["entity"])
        series = sizes.setdefault(rec["window"], {})
        series[rec["start_ms"]] = rec
        while len(series) > self.history_windows:
            del series[min(series)]
        while len(self.windows) > self.max_entities:
            self.windows.popitem(last=False)
        return {"type": "aggregate", "record": rec}

    def _alert(self, data: Any) -> dict:
        rec = AlertView.model_validate(data).model_dump()
        if rec["type"] == "fired":
            self.active[(rec["entity"], rec["direction"])] = rec
        else:
            self.active.pop((rec["entity"], rec["direction"]), None)
        self.alerts.append(rec)
        return {"type": "alert", "record": rec}

    def _post(self, data: Any) -> dict | None:
        if self.recent_posts == 0:
            return None
        rec = PostView.model_validate(data).model_dump()
        self.posts.pop(rec["post_id"], None)
        self.posts[rec["post_id"]] = rec
        while len(self.posts) > self.recent_posts:
            self.posts.popitem(last=False)
        return {"type": "post", "record": rec}

    # ---- reading ---------------------------------------------------------------------------

    def snapshot(self) -> dict:
        return {"type": "snapshot",
                "aggregates": [r for sizes in self.windows.values() for series in sizes.values()
                               for r in series.values()],
                "alerts": list(self.alerts),
                "active": list(self.active.values()),
                "posts": list(self.posts.values()),
                "skipped": dict(self.skipped)}

    def post(self, post_id: str) -> dict | None:
        return self.posts.get(post_id)

"""Message contracts: input post, output result, dead letter (pydantic v2, versioned).

These are the contracts dashboards and downstream consumers depend on. `lrsa schemas --out DIR`
exports them as JSON Schema files (committed under schemas/); a test keeps the files in sync.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = "1.0"  # post and dead letter
RESULT_SCHEMA_VERSION = "1.1"  # 1.1 adds event time, lang, text, meta, scored, truncated, Aspect.entity

Sentiment = Literal["positive", "neutral", "negative"]


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1)


class ImageB64(BaseModel):
    model_config = ConfigDict(extra="forbid")
    b64: str = Field(min_length=1)


class Post(BaseModel):
    """An input social post. Unknown top-level fields are moved into `meta`, never rejected."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    text: str
    image: ImageUrl | ImageB64 | None = None
    lang: str | None = None
    created_at: datetime | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _extras_into_meta(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        extras = {k: v for k, v in data.items() if k not in known}
        if not extras:
            return data
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            return data  # let field validation report the bad `meta`
        kept = {k: v for k, v in data.items() if k in known}
        kept["meta"] = {**extras, **meta}
        return kept

    def image_bytes(self) -> bytes | None:
        """The decoded inline image, or None for no image / an image given by URL."""
        if isinstance(self.image, ImageB64):
            return base64.b64decode(self.image.b64, validate=True)
        return None


class Aspect(BaseModel):
    term: str
    start: int = Field(ge=0, description="character offset of the term in the post text")
    end: int = Field(ge=0, description="exclusive end offset; text[start:end] == term")
    sentiment: Sentiment
    confidence: float = Field(ge=0.0, le=1.0)
    entity: str | None = Field(None, description="normalised entity key of the term (lrsa/entities.py): the "
                               "alias file's display name for a known entity, else the folded term; "
                               "absent in v1.0 records")


class SourceRef(BaseModel):
    topic: str
    partition: int
    offset: int


class Result(BaseModel):
    """One output record per valid post, keyed by post id on the output topic.

    v1.1 adds optional fields only (event_time, event_time_source, lang, text, meta, scored,
    truncated, Aspect.entity): a v1.0 record still parses (scored is then inferred from its
    stage timings, as rationale_used is)."""

    schema_version: str = RESULT_SCHEMA_VERSION
    post_id: str
    aspects: list[Aspect]
    rationale: str | None = None
    model: dict[str, str] = Field(default_factory=dict, description="component -> version")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="stage -> milliseconds")
    source: SourceRef
    rationale_used: bool | None = Field(
        None, description="whether the aspects were scored with an LLM rationale (false: from the text alone, "
        "e.g. a post the rationale gate judged certain); null when no score stage ran. Filled from the "
        "stages the post went through when not given")
    event_time: datetime | None = Field(None, description="when the post was made: its created_at, else the "
                                        "Kafka record timestamp of the input record (UTC; see event_time_source)")
    event_time_source: Literal["created_at", "kafka_timestamp"] | None = Field(
        None, description="where event_time comes from; null when there is no event_time")
    lang: str | None = Field(None, description="the post's lang, as given")
    text: str | None = Field(None, description="the post text (aspect start/end index into it); null when the "
                             "worker runs with --no-result-text")
    meta: dict[str, Any] | None = Field(None, description="the post's meta, passed through")
    scored: bool = Field(False, description="whether the score stage ran for this post: aspects [] with scored "
                         "true means none found, with scored false that nothing looked. Inferred from the "
                         "stage timings when not given (v1.0 records)")
    truncated: bool = Field(False, description="the post text was longer than the model's token limit: words "
                            "beyond it were not read")

    @model_validator(mode="before")
    @classmethod
    def _scored_from_stages(cls, data: Any) -> Any:
        if isinstance(data, dict) and "scored" not in data:
            timings = data.get("timings_ms")
            if isinstance(timings, dict) and ("score" in timings or "prescore" in timings):
                data = {**data, "scored": True}
        return data

    @model_validator(mode="after")
    def _rationale_used_from_stages(self) -> Result:
        """A post was scored when a score stage ("score", or the gate's text-only "prescore") timed
        it; its rationale was used when it has one: the gated chain re-scores exactly the posts
        given a rationale, the ungated chain scores every post after its rationale."""
        if self.rationale_used is None and ("score" in self.timings_ms or "prescore" in self.timings_ms):
            self.rationale_used = bool(self.rationale and self.rationale.strip())
        return self


class DeadLetterReason(str, Enum):
    invalid_json = "invalid_json"
    schema_violation = "schema_violation"
    empty_text = "empty_text"
    text_too_long = "text_too_long"
    image_undecodable = "image_undecodable"
    image_too_large = "image_too_large"
    stage_failed = "stage_failed"  # a stage (rationale, score) failed on this post alone, beyond its retry budget


class ErrorInfo(BaseModel):
    reason: DeadLetterReason
    error_class: str
    message: str


class DeadLetter(BaseModel):
    """A post that could not be processed, with the original bytes and why."""

    schema_version: str = SCHEMA_VERSION
    original_b64: str = Field(description="the message value exactly as consumed, base64")
    original_key_b64: str | None = None
    error: ErrorInfo
    source: SourceRef
    timestamp: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)


ALL_SCHEMAS: dict[str, type[BaseModel]] = {
    "post": Post,
    "result": Result,
    "dead_letter": DeadLetter,
}
# the version of each contract; `lrsa schemas` writes schemas/<name>.v<version>.schema.json
# (files of earlier versions stay, frozen, for readers of older records)
SCHEMA_VERSIONS: dict[str, str] = {"post": SCHEMA_VERSION, "result": RESULT_SCHEMA_VERSION,
                                   "dead_letter": SCHEMA_VERSION}

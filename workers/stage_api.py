"""The small interface between the pipeline and its stages (rationale, score).

A stage processor turns a batch of WorkItems into the same items, enriched. The pipeline owns
batching, actor pools, retries and offsets; a processor only does the work. A processor raises
TransientError for a failure of a downstream service (the batch is retried with backoff, never
dead-lettered, and its offsets are not committed until it succeeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lrsa.schemas import Aspect, Post, SourceRef


class TransientError(Exception):
    """A downstream service failed (e.g. Triton unreachable): retry later, do not dead-letter."""


@dataclass
class WorkItem:
    post: Post
    source: SourceRef
    rationale: str | None = None
    image_description: str | None = None
    aspects: list[Aspect] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)


class StageProcessor(Protocol):
    """Implemented by workers.rationale_stage.RationaleProcessor and workers.scorer_stage.ScoreProcessor."""

    name: str

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        """Enrich the items in place or return new ones, same order and length."""
        ...

    def versions(self) -> dict[str, str]:
        """Component -> version, copied into Result.model."""
        ...

    def healthy(self) -> bool:
        """False while the downstream service is known to be down (circuit open)."""
        ...

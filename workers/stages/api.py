"""The small interface between the pipeline and its stages (rationale, score).

A stage processor turns a batch of WorkItems into the same items, enriched. The pipeline owns
batching, actor pools, retries and offsets; a processor only does the work. A processor raises
TransientError for a failure of a downstream service (the batch is retried with backoff, and its
offsets are not committed until it succeeds), and NonRetryable for a failure that no retry can fix
(the service rejected this input). Every batch has a retry budget (attempts and time); once it is
spent, or at once for NonRetryable, the pipeline splits the batch in halves until it finds the
post(s) the stage fails on and dead-letters those (`stage_failed`); the rest go on. A processor
whose `healthy()` says False when it raises TransientError reports an outage: that batch is
retried for as long as the outage lasts and never split or dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lrsa.schemas import Aspect, Post, SourceRef


class TransientError(Exception):
    """A downstream service failed (e.g. Triton unreachable): retry later, do not dead-letter."""


class NonRetryable(Exception):
    """This batch can never succeed as it is (e.g. the server rejected an input, an image cannot be
    decoded): no retry; the pipeline splits the batch to isolate the post(s) at fault."""


@dataclass(frozen=True)
class GateRole:
    """A stage's part in a gate, given by configuration (the runner knows no stage names):
    `decides` - after processing, judge each post against this threshold and mark whether it goes
    on (`WorkItem.rationale_wanted`; the rationale gate's prescore stage); `follows` - work only
    on the posts a deciding stage sent on, pass the others through untouched (the rationale and
    score stages behind the gate)."""

    decides: float | None = None
    follows: bool = False


@dataclass
class WorkItem:
    post: Post
    source: SourceRef
    rationale: str | None = None
    image_description: str | None = None
    aspects: list[Aspect] | None = None
    # the score stage's certainty that a post without aspects has none (lrsa.gate.no_aspect_certainty)
    no_aspect_certainty: float | None = None
    # the rationale gate's decision (workers/stages/gate.py): None = no gate (every stage takes the post),
    # False = certain from its text alone (the rationale and score stages pass it on untouched)
    rationale_wanted: bool | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    kafka_timestamp_ms: int | None = None  # the input record's timestamp (the event time without created_at)
    truncated: bool | None = None  # set by the score stage: the text was cut to the model's token limit
    model_versions: dict[str, str] = field(default_factory=dict)


class StageProcessor(Protocol):
    """Implemented by workers.stages.rationale.RationaleProcessor and workers.stages.score.ScoreProcessor."""

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

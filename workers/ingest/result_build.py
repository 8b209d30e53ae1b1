"""The result record (contract v1.1) of a post that went through the stages: what the ingest
actor emits. Kept here so that the ingest loop only calls `build_result`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lrsa.entities import EntityNormaliser
from lrsa.event_time import event_time
from lrsa.schemas import Result
from workers.config import WorkerSettings
from workers.stages.api import WorkItem


@lru_cache(maxsize=4)
def normaliser(aliases: Path | None) -> EntityNormaliser:
    """One normaliser per alias file per process (the file is read once, at the first result;
    WorkerSettings has already refused a bad one at start)."""
    return EntityNormaliser.from_file(aliases)


def build_result(item: WorkItem, settings: WorkerSettings) -> Result:
    post = item.post
    entity = normaliser(settings.entity_aliases)
    aspects = item.aspects or []
    for a in aspects:  # this item's own aspects (from its stage answer): set in place, no copies
        a.entity = entity(a.term)
    when, source = event_time(post.created_at, item.kafka_timestamp_ms)
    return Result(post_id=post.id, aspects=aspects, rationale=item.rationale, model=item.model_versions,
                  timings_ms=item.timings_ms, source=item.source, event_time=when, event_time_source=source,
                  lang=post.lang, text=post.text if settings.result_text else None, meta=post.meta,
                  scored=item.aspects is not None, truncated=bool(item.truncated))

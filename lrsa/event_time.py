"""A post's event time for the result contract v1.1: its `created_at`, else the Kafka record's
timestamp. Aggregations bucket by it, so a replayed backlog lands in the minutes its posts were
made, not in the minute it was replayed."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

EventTimeSource = Literal["created_at", "kafka_timestamp"]


def event_time(created_at: datetime | None,
               kafka_timestamp_ms: int | None) -> tuple[datetime | None, EventTimeSource | None]:
    """(event time in UTC, where it came from). A `created_at` without a zone is taken as UTC; a
    missing or negative record timestamp (-1: the broker had none) gives (None, None)."""
    if created_at is not None:
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=timezone.utc)
        try:
            return created_at.astimezone(timezone.utc), "created_at"
        except (OverflowError, ValueError):  # e.g. 0001-01-01T00:00+05:00 has no UTC datetime
            return created_at, "created_at"
    if kafka_timestamp_ms is not None and kafka_timestamp_ms >= 0:
        try:
            return datetime.fromtimestamp(kafka_timestamp_ms / 1000, tz=timezone.utc), "kafka_timestamp"
        except (OverflowError, OSError, ValueError):  # a timestamp beyond datetime's range
            return None, None
    return None, None

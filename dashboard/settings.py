"""Settings of `lrsa dashboard` (env LRSA_<FIELD>, flags --field-name)."""

from __future__ import annotations

from pydantic import Field

from lrsa.kafka_security import KafkaSecurity
from lrsa.stack_env import bootstrap_field


class DashboardSettings(KafkaSecurity):
    """`lrsa dashboard`: the live web page over the aggregates, alerts and results topics (its
    Kafka reader takes the same LRSA_KAFKA_* security settings as every other client)."""

    bootstrap_servers: str = bootstrap_field()
    aggregates_topic: str = Field("lrsa.aggregates", description="compacted topic of entity window aggregates "
                                  "(from `lrsa aggregate`), read from its start: the page's history on start")
    alerts_topic: str = Field("lrsa.alerts", description="topic of shift alert events (from `lrsa aggregate`), "
                              "read from its start")
    results_topic: str = Field("results", description="the worker's output topic: the latest posts with their "
                               "aspects and rationales (empty: no posts panel)")
    http_host: str = Field("127.0.0.1", description="address the page is served on (loopback by default: "
                           "the page has no login; put a proxy with authentication in front to share it)")
    http_port: int = Field(8050, ge=0, le=65535, description="port of the page (0: a free one, printed)")
    history_windows: int = Field(360, ge=1, description="windows kept per entity and window size (older ones "
                                 "are dropped from the page)")
    max_entities: int = Field(5000, ge=1, description="entities kept (the least recently updated go first)")
    recent_posts: int = Field(200, ge=0, description="latest posts kept for the posts panel and post look-ups")
    results_backfill: int = Field(100, ge=0, description="on start, results read back per partition of the "
                                  "results topic (the rest of it is not replayed)")
    max_message_bytes: int = Field(20 * 1024 * 1024, description="largest record fetched (bytes)")
    metadata_interval_s: float = Field(2.0, gt=0, description="how often missing topics and new partitions "
                                       "are looked for")

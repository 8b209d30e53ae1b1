"""Settings of `lrsa aggregate` (event-time entity windows and shift alerts over the output topic)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from lrsa.aggregates import parse_windows
from lrsa.shift import ShiftParams
from lrsa.paths import state_dir
from lrsa.settings import settings_slice
from lrsa.stack_env import bootstrap_field
from workers.config import KafkaClientSettings


class AggregateSettings(KafkaClientSettings):
    """Env vars LRSA_AGGREGATE_<FIELD> (its own prefix: `lrsa run`'s LRSA_INPUT_TOPIC, LRSA_GROUP_ID...
    must not leak in); the bootstrap servers also read the shared LRSA_BOOTSTRAP_SERVERS."""

    model_config = SettingsConfigDict(env_prefix="LRSA_AGGREGATE_")
    bootstrap_servers: str = bootstrap_field(validation_alias=AliasChoices(
        "bootstrap_servers", "LRSA_AGGREGATE_BOOTSTRAP_SERVERS", "LRSA_BOOTSTRAP_SERVERS"))
    input_topic: str = Field("results", description="the output topic of `lrsa run` (result records) read here")
    aggregates_topic: str = Field("lrsa.aggregates", description="compacted topic of entity window aggregates, "
                                  "keyed entity|window|window_start (created compacted when missing)")
    alerts_topic: str = Field("lrsa.alerts", description="topic of shift alert events, keyed entity|direction")
    group_id: str = Field("lrsa-aggregate", description="the aggregator's own consumer group on the input topic")
    auto_offset_reset: str = Field("earliest", description="where a group without a commit starts: earliest|latest")
    windows: str = Field("1m", description="tumbling window sizes, comma separated (s|m|h|d), e.g. 1m,1h")
    allowed_lateness_s: float = Field(60.0, ge=0, description="how long after a window's end (event time, against "
                                      "the entity's latest event) a late mention still updates it; later ones are "
                                      "counted in lrsa_aggregate_late_mentions_total and logged")
    state_dir: Path = Field(default_factory=lambda: state_dir() / "aggregate-state",
                            description="local RocksDB window state (rebuilt from the changelog topics if lost)")
    exactly_once: bool = Field(True, description="Kafka transactions: outputs, changelogs and offsets commit "
                               "together, so a crash neither loses nor double-counts a mention")
    commit_interval_s: float = Field(1.0, gt=0, description="checkpoint (transaction) interval; outputs are "
                                     "visible to read_committed readers at each checkpoint")
    instance_id: str = Field("0", description="this instance's name in the group (unique per running instance): "
                             "its transactional id and static group membership are <group-id>-<instance-id>, so a "
                             "restarted instance fences its dead predecessor and takes its partitions at once")
    session_timeout_ms: int = Field(10_000, ge=6000, description="consumer group session timeout: how soon the "
                                    "partitions of an instance that died and did not come back move to another")
    transaction_timeout_ms: int = Field(10_000, ge=1000, description="broker-side timeout of an open transaction "
                                        "(how long a killed instance's open outputs can hold readers back)")
    fetch_wait_max_ms: int = Field(100, ge=1, description="longest a fetch waits on an empty partition: Quix aligns "
                                   "the input and the repartition topic by timestamp and waits for both, so this "
                                   "bounds the latency it adds")
    topic_partitions: int = Field(4, ge=1, description="partitions of the aggregates and alerts topics when created")
    metrics_host: str = Field("127.0.0.1", description="address of the Prometheus metrics endpoint")
    metrics_port: int | None = Field(9466, ge=0, description="Prometheus metrics port (0: a free port, printed; "
                                     "none: no endpoint)")
    exit_when_idle_s: float | None = Field(None, gt=0, description="stop after this many seconds without a "
                                           "result (batch runs, tests); none: run until stopped")

    alert_window: str | None = Field(None, description="window size whose closed windows feed the shift "
                                     "detector (none: the first of --windows)")
    watchlist: str = Field("", description="entities to alert on, comma separated (empty: any entity that reaches "
                           "--alert-min-mentions in a window)")
    alert_min_mentions: int = Field(20, ge=1, description="mentions a window needs before it can fire or resolve")
    alert_min_baseline_mentions: int = Field(40, ge=1, description="mentions the trailing baseline needs")
    alert_baseline_windows: int = Field(12, ge=1, description="closed windows (with mentions) in the trailing baseline")
    alert_z_fire: float = Field(3.0, gt=0, description="two-proportion z (window share vs baseline share) that fires")
    alert_z_resolve: float = Field(1.0, description="z at or below which an open episode resolves")
    alert_min_share_delta: float = Field(0.15, ge=0, le=1, description="least share increase that fires")

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: str) -> str:
        parse_windows(v)
        return v

    def window_sizes(self) -> list[tuple[str, int]]:
        return parse_windows(self.windows)

    def alert_window_size(self) -> tuple[str, int]:
        if self.alert_window is None:
            return self.window_sizes()[0]
        return parse_windows(self.alert_window)[0]

    def shift_params(self) -> ShiftParams:
        return settings_slice(ShiftParams, self, "alert_",
                              watchlist=tuple(w.strip() for w in self.watchlist.split(",") if w.strip()))

"""Settings of the streaming worker (`lrsa run`) and the embedded Kafka stack (`lrsa stack`).

Every field is an env var LRSA_<FIELD> and (for the commands that expose it) a flag; docs/configuration.md
(the configuration reference) is generated from the descriptions here.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

from pydantic import Field, model_validator

from lrsa.paths import state_dir
from lrsa.settings import LrsaSettings
from lrsa.stack_env import bootstrap_field
from workers.kafka_clients.security import KafkaSecurity
from workers.driver.autoscaler import AutoscaleSettings
from workers.driver.control_settings import ControlSettings
from workers.stages.api import GateRole

# Kafka's own limit is per record batch; 16 MiB + headroom fits a 10 MB image as base64 (~14 MB).
MAX_MESSAGE_BYTES = 20 * 1024 * 1024


class KafkaClientSettings(KafkaSecurity):
    bootstrap_servers: str = bootstrap_field()
    max_message_bytes: int = Field(MAX_MESSAGE_BYTES, description="largest message the clients send or fetch (bytes)")
    # kafka-python's default is 5 min; new topics and added partitions should be picked up sooner.
    metadata_max_age_ms: int = Field(10_000, ge=1000, description="how often consumers refresh topic metadata: "
                                     "how soon they see a new topic or added partitions")


class WorkerSettings(AutoscaleSettings, ControlSettings, KafkaClientSettings):
    """`lrsa run`: the consumer group of ingest actors and the stage pools behind it."""

    # `lrsa run --help` in this order (lrsa.settings.add_settings_flags); "*" ends a prefix
    FLAG_GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {
        "Kafka connection": ("bootstrap_servers", "input_topic", "output_topic", "dlq_topic", "group_id",
                             "auto_offset_reset", "kafka_connect_timeout_s", "session_timeout_ms",
                             "partition_assignment", "rebalance_drain_s", "static_membership", "max_message_bytes",
                             "metadata_max_age_ms"),
        "Kafka security (TLS, SASL)": ("kafka_*",),
        "stages": ("rationale_*", "score_*", "scorer_*", "result_text", "entity_aliases", "max_text_chars",
                   "max_image_bytes"),
        "delivery": ("exactly_once", "instance_id", "transaction_timeout_ms", "commit_interval_ms",
                     "poll_max_records", "batch_*", "max_inflight_batches", "retry_*", "drain_timeout_s",
                     "stop_grace_s"),
        "scaling and Ray": ("pool_*", "ingest_*", "actor_start_timeout_s", "ray_*", "exit_when_idle"),
        "control endpoint": ("control_*",),
        "metrics": ("metrics_*", "stage_metrics"),
    }

    input_topic: str = Field("posts", description="topic the posts are consumed from")
    output_topic: str = Field("results", description="topic results are written to, keyed by post id")
    dlq_topic: str = Field("posts.dlq", description="dead-letter topic for posts that can never succeed")
    group_id: str = Field("lrsa", description="Kafka consumer group of the ingest actors")
    auto_offset_reset: str = Field("earliest", description="where a group without a commit starts: earliest|latest")

    session_timeout_ms: int = Field(45_000, ge=6000, description="consumer group session timeout: how soon "
                                    "the partitions of a crashed member move to another")
    partition_assignment: Literal["eager", "cooperative-sticky"] = Field(
        "eager", description="how the group moves partitions: eager (range/round-robin; every member gives up "
        "all its partitions at each change, then gets some back) or cooperative-sticky (KIP-429: only the "
        "partitions that move are revoked, the others keep flowing; every member of the group must use it)")
    static_membership: bool = Field(False, description="KIP-345: each ingest actor joins with a stable "
                                    "group.instance.id (<group>-<instance>-ingest-<n>, --instance-id as in "
                                    "exactly-once), so a member restarted within the session timeout gets its "
                                    "partitions back without a rebalance of the group; a member that stops for "
                                    "good is only replaced after the session timeout")
    rebalance_drain_s: float = Field(5.0, gt=0, description="at a rebalance, how long the revoke hand-over may "
                                     "finish in-flight batches before it commits what is done and leaves the rest "
                                     "to be read again (the client's heartbeats wait meanwhile, so at most half the "
                                     "session timeout is used)")
    ingest_actors: int = Field(1, ge=1, description="ingest actors = consumer group members (partitions spread over them)")
    ingest_num_cpus: float = Field(0.5, ge=0, description="Ray CPUs reserved per ingest actor")
    ingest_stall_s: float | None = Field(None, gt=0, description="an ingest actor whose loop has not ticked for "
                                         "this long (blocked in a Kafka call, e.g. after a coordinator loss) is "
                                         "ended and replaced (--ingest-replacements); default --drain-timeout-s "
                                         "+ 60, above the longest legitimate block (a rebalance hand-over)")
    ingest_replacements: int = Field(3, ge=0, description="ingest actors the driver replaces in one run when one "
                                     "dies (node or process lost) or its loop fails (e.g. a fenced producer): the "
                                     "replacement rejoins the group and redoes the posts not yet committed; one "
                                     "more failure stops the driver (exit 1) for its supervisor to restart")
    poll_max_records: int = Field(1000, ge=1, description="max records per consumer poll")
    commit_interval_ms: int = Field(500, ge=10, description="how often done offsets are committed (batched manual commits)")
    exactly_once: bool = Field(False, description="transactional output + offsets (Kafka transactions); "
                                                   "read the output with isolation_level=read_committed")
    instance_id: str | None = Field(None, description="stable identity of this driver in its group (exactly-once): "
                                    "its ingest actors' transactional ids are <group>-<instance>-ingest-<n>; give "
                                    "each driver its own (e.g. a StatefulSet pod name); none: <hostname>-<slot>, "
                                    "the lowest slot no other driver of the group holds on this host")
    transaction_timeout_ms: int = Field(60_000, description="broker-side timeout of an open transaction (exactly-once mode)")

    batch_size: int = Field(32, ge=1, description="posts per stage call (max batch size)")
    batch_max_wait_ms: int = Field(20, ge=0, description="longest a partial batch waits before it is sent on (latency bound)")
    max_inflight_batches: int = Field(4, ge=1, description="batches in flight per stage per ingest actor; "
                                                             "when full the partitions are paused (backpressure)")
    drain_timeout_s: float = Field(120.0, gt=0, description="on stop, how long in-flight batches may take to finish; "
                                                         "what is unfinished then stays uncommitted (redone on restart)")
    retry_initial_s: float = Field(0.5, gt=0, description="first backoff after a transient stage failure (doubles, with jitter)")
    retry_max_s: float = Field(30.0, gt=0, description="longest backoff between retries of a failed batch")
    retry_budget_attempts: int = Field(5, ge=1, description="failed attempts of a batch before it is split in halves "
                                       "to find the post(s) the stage fails on (dead-lettered: stage_failed); "
                                       "a stage that reports itself down is retried without limit")
    retry_budget_s: float = Field(60.0, gt=0, description="time since a batch first failed after which it is "
                                  "split like an exhausted --retry-budget-attempts")
    stop_grace_s: float = Field(25.0, ge=5, description="on SIGTERM/stop, the whole stop (drain, flush, commit, "
                                "close) ends within this; keep it below the Kubernetes grace period (30 s)")
    actor_start_timeout_s: float = Field(120.0, gt=0, description="longest a stage actor may take to be placed by "
                                         "Ray and start (model loading included): at start-up the worker fails, "
                                         "a pool that grows keeps its actors and reports it")

    rationale_enabled: bool = Field(False, description="run the rationale stage (off: posts pass through without rationale)")
    rationale_processor: str = Field("workers.stages.rationale:RationaleProcessor",
                                     description="dotted path module:Class of the rationale StageProcessor")
    rationale_pool_min: int = Field(1, ge=1, description="rationale actors started")
    rationale_pool_max: int = Field(1, ge=1, description="rationale actors at most (grown while its slots stay busy)")
    rationale_num_gpus: float = Field(0.0, ge=0, description="GPUs per rationale actor (0: no GPU is asked of Ray)")
    rationale_num_cpus: float = Field(1.0, ge=0, description="Ray CPUs per rationale actor")
    rationale_gate: float | None = Field(None, ge=0, le=1, description="confidence gate: score each post from "
                                         "its text first (a prescore pool of the score processor) and send only "
                                         "posts whose certainty is below this to the rationale stage and a "
                                         "re-score (lrsa/gate.py); none: every post gets a rationale")

    score_enabled: bool = Field(True, description="run the score stage: the fused SLM on tritonserver at "
                                "--scorer-url (start one with `lrsa serve`, or `lrsa run --serve`); "
                                "--no-score-enabled: pass-through, results carry no aspects")
    score_processor: str = Field("workers.stages.score:ScoreProcessor",
                                 description="dotted path module:Class of the score StageProcessor")
    score_pool_min: int = Field(1, ge=1, description="score actors started")
    score_pool_max: int = Field(1, ge=1, description="score actors at most (grown while its slots stay busy)")
    score_num_gpus: float = Field(0.0, ge=0, description="GPUs per score actor (0: no GPU is asked of Ray)")
    score_num_cpus: float = Field(0.5, ge=0, description="Ray CPUs per score actor")

    ingest_resources: str = Field("", description="custom Ray resources per ingest actor, name=amount,... : "
                                  "keeps the Kafka consumers on a node group (e.g. the stable nodes, away from "
                                  "preemptible GPU nodes)")
    score_resources: str = Field("", description="custom Ray resources per score (and prescore) actor, "
                                 "name=amount,... (e.g. triton_clients=1): pins the pool to the nodes started "
                                 "with those resources (`ray start --resources`)")
    rationale_resources: str = Field("", description="custom Ray resources per rationale actor, name=amount,... "
                                     "(e.g. llm_nodes=1): pins the pool to a node group")
    # Stage settings that matter in production as flags too. They share the env var of the stage
    # setting they override (the driver reads both, workers/stages/settings.py); none: the stage's own.
    scorer_url: str | None = Field(None, description="Triton gRPC address host:port of the score actors "
                                   "(overrides the scorer setting `url`)")
    scorer_checkpoint: Path | None = Field(None, description="checkpoint folder of the served model, for the "
                                           "score actors' tokenizer (made absolute by the driver)")
    rationale_model: str | None = Field(None, description="rationale LLM of the rationale actors: HF id or "
                                        "local folder (made absolute by the driver)")
    rationale_vlm_model: str | None = Field(None, description="vision-language model of the rationale actors "
                                            "(HF id or folder)")
    rationale_device: str | None = Field(None, description="device of the rationale actors: auto, cpu, cuda, cuda:N")

    pool_grow_after_s: float = Field(5.0, gt=0, description="a stage pool below its max gains an actor once "
                                     "75% of its in-flight slots were in use over this long")
    pool_shrink_after_s: float = Field(60.0, gt=0, description="a stage pool above its min loses an actor once "
                                       "at most 25% of its in-flight slots were in use over this long")

    max_text_chars: int = Field(10_000, ge=1, description="longer post text is dead-lettered (text_too_long)")
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1, description="larger decoded images are dead-lettered (image_too_large)")

    result_text: bool = Field(True, description="results carry the post text (contract v1.1); --no-result-text "
                              "leaves it out (smaller records, no post text downstream)")
    entity_aliases: Path | None = Field(None, description="YAML alias file of the entity normaliser "
                                        "(Display Name: [aliases]; e.g. deploy/entities.aliases.yaml): fills each "
                                        "aspect's entity key; none: folding only (lrsa/entities.py)")

    metrics_host: str = Field("127.0.0.1", description="address of the Prometheus /metrics endpoint")
    metrics_port: int = Field(9464, ge=0, description="port of the Prometheus /metrics endpoint (0: pick a free one)")
    stage_metrics: bool = Field(True, description="each stage actor also serves its processor's own metrics "
                                                   "(e.g. the scorer's) on a free port of metrics_host, logged at start")
    metrics_sd_file: Path | None = Field(None, description="write every /metrics target of this worker (the "
                                         "driver's and each stage actor's) to this Prometheus file_sd JSON file, "
                                         "rewritten as pools change; deploy/prometheus/prometheus.yml reads it")
    metrics_interval_s: float = Field(1.0, gt=0, description="how often actors report metrics and lag is measured")

    ray_address: str | None = Field(None, description="join this Ray cluster instead of starting a local one")
    ray_num_cpus: int | None = Field(None, description="CPUs of the local Ray (default: the machine's count, at least 4)")
    exit_when_idle: float | None = Field(None, description="stop cleanly once the input is drained and "
                                                            "nothing arrived for this many seconds")

    @model_validator(mode="after")
    def _resources_parse(self) -> WorkerSettings:
        parse_resources(self.score_resources)
        parse_resources(self.rationale_resources)
        parse_resources(self.ingest_resources)
        return self

    @model_validator(mode="after")
    def _entity_aliases_load(self) -> WorkerSettings:
        """A bad alias file stops the worker at start (with the reason), not at its first result."""
        if self.entity_aliases is not None:
            from lrsa.entities import EntityNormaliser

            self.entity_aliases = self.entity_aliases.resolve()  # the actors may run elsewhere on this host
            EntityNormaliser.from_file(self.entity_aliases)
        return self

    @model_validator(mode="after")
    def _cooperative_is_at_least_once(self) -> WorkerSettings:
        if self.exactly_once and self.partition_assignment != "eager":
            raise ValueError("partition_assignment cooperative-sticky is not supported with exactly_once yet (a "
                             "transaction spans every partition of the member); use eager")
        return self

    @model_validator(mode="after")
    def _gate_needs_both_stages(self) -> WorkerSettings:
        if self.rationale_gate is not None and not (self.rationale_enabled and self.score_enabled):
            raise ValueError("rationale_gate needs both the rationale and the score stage enabled")
        return self

    def stage_settings(self) -> list[StageSpec]:
        """Every enabled stage, in order, with its pool, resources and part in the gate. With the
        rationale gate, a "prescore" pool of the score processor comes first and decides."""
        gate = self.rationale_gate
        follows = gate is not None  # behind a gate, the rationale and score stages take what it sends
        score_pool = dict(processor=self.score_processor, pool_min=self.score_pool_min,
                          pool_max=self.score_pool_max, num_gpus=self.score_num_gpus, num_cpus=self.score_num_cpus,
                          resources=parse_resources(self.score_resources))
        stages = []
        if gate is not None:
            stages.append(StageSpec("prescore", **score_pool, gate_role=GateRole(decides=gate)))
        if self.rationale_enabled:
            stages.append(StageSpec("rationale", self.rationale_processor, self.rationale_pool_min,
                                    self.rationale_pool_max, self.rationale_num_gpus, self.rationale_num_cpus,
                                    parse_resources(self.rationale_resources), GateRole(follows=follows)))
        if self.score_enabled:
            stages.append(StageSpec("score", **score_pool, gate_role=GateRole(follows=follows)))
        return stages

    def stage(self, name: str) -> StageSpec:
        """One enabled stage by name (KeyError naming the enabled ones otherwise)."""
        for spec in self.stage_settings():
            if spec.name == name:
                return spec
        raise KeyError(f"no enabled stage {name!r}; enabled: {[st.name for st in self.stage_settings()]}")


class StageSpec(NamedTuple):
    """One enabled stage as the driver builds its pool: nested per-stage settings instead of the
    flat `--<stage>-*` fields (which stay the flags and env names)."""

    name: str
    processor: str        # dotted path of the StageProcessor
    pool_min: int
    pool_max: int
    num_gpus: float
    num_cpus: float
    resources: dict[str, float]  # custom Ray resources per actor (the prescore pool: the score's)
    gate_role: GateRole          # decides with a threshold, follows the decider, or neither


def parse_resources(text: str) -> dict[str, float]:
    """'name=amount,name=amount' -> {name: amount}; ValueError naming the part that is wrong."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, amount = part.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or value < 0:
            raise ValueError(f"custom resources: {part!r} is not name=amount (amount >= 0)")
        out[name.strip()] = value
    return out


class StackSettings(LrsaSettings):
    """`lrsa stack`: the embedded single-node Kafka (KRaft) on loopback."""

    kafka_dir: Path = Field(default_factory=lambda: state_dir() / "kafka",
                            description="data dir of the embedded broker (logs, state)")
    kafka_port: int | None = Field(None, ge=0, description="broker port on 127.0.0.1 (none: the data dir's, else 9092; 0: a free one)")
    kafka_controller_port: int = Field(0, ge=0, description="KRaft controller port (0: pick a free one)")
    kafka_heap: str = Field("512m", description="JVM max heap of the broker")
    kafka_partitions: int = Field(4, ge=1, description="partitions of the topics `stack up` creates")
    kafka_topics: str = Field("posts,results,posts.dlq", description="topics `stack up` creates, comma separated")
    brokers: int = Field(1, ge=1, le=9, description="KRaft nodes on loopback (each broker + controller); above 1: "
                         "a cluster in kafka_dir/node-N, topics replicated to 3 nodes (at most brokers) with "
                         "min.insync.replicas a majority (workers/devstack/kafka_cluster.py); the size stays with the data dir")

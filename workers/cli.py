"""Commands of the streaming backbone: `lrsa run`, `lrsa produce`, `lrsa stack up|down|status`,
`lrsa bench pipeline`. Heavy imports (ray, kafka) happen inside the command functions."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from lrsa import stack_env
from lrsa.settings import SettingsError, add_settings_flags, settings_from_args
from workers.stages import settings as stage_settings  # noqa: F401 - the stage actors' settings classes: their env vars are known
from workers.config import KafkaClientSettings, StackSettings, WorkerSettings


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="the streaming worker: Kafka -> Ray stages -> Kafka (at-least-once)",
        usage="lrsa run [--bootstrap-servers HOST:PORT] [--input-topic T] [--output-topic T] [OPTIONS]",
        description=textwrap.fill(
            "The streaming worker: ingest actors (a Kafka consumer group) read posts, the stage pools (the "
            "fused-SLM scorer on tritonserver, on by default; the rationale LLM) work on them in batches, "
            "results go to the output topic and bad posts to the dead-letter topic; an offset is committed only after its result or dead letter is "
            "acknowledged. Every option is also an environment variable (docs/configuration.md); a flag wins.", 78),
        epilog="examples:\n"
               "  # score posts with the shipped model: a local tritonserver started for the worker\n"
               "  lrsa run --serve\n"
               "  # a tritonserver of your own (`lrsa serve`), the rationale LLM behind the gate\n"
               "  lrsa run --scorer-url 127.0.0.1:8001 --rationale-enabled --rationale-gate 0.5\n"
               "  # exactly-once output, two ingest actors, metrics targets for Prometheus\n"
               "  lrsa run --serve --exactly-once --ingest-actors 2 --metrics-sd-file lrsa-targets.json\n"
               "  # pass-through (no scoring), ending once the input is drained\n"
               "  lrsa run --no-score-enabled --input-topic posts --exit-when-idle 5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_flags(p, WorkerSettings)
    p.set_defaults(func=_run)

    p = sub.add_parser("produce", help="send posts from a JSONL file to a topic, lines as they are")
    p.add_argument("--file", type=Path, required=True, help="one JSON post per line")
    p.add_argument("--topic", default="posts", help="topic to send to (default posts)")
    add_settings_flags(p, KafkaClientSettings)
    p.set_defaults(func=_produce)

    from workers.devstack.consume import ConsumeSettings

    p = sub.add_parser("consume", help="print a topic's records: results, dead letters, aggregates, alerts",
                       description="Read TOPIC without a consumer group (commits nothing) and print one line per "
                                   "record, shaped by what it is, or the values as they are with --json-lines. "
                                   "Stops after --max records or --idle-s without one.",
                       epilog="examples:\n  lrsa consume results --from-beginning --max 20\n"
                              "  lrsa consume posts.dlq --from-beginning\n"
                              "  lrsa consume lrsa.alerts --json-lines --idle-s 60 > alerts.jsonl",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("topic", metavar="TOPIC", help="the topic to read (e.g. results, posts.dlq, lrsa.aggregates)")
    add_settings_flags(p, ConsumeSettings)
    p.set_defaults(func=_consume)

    p = sub.add_parser("stack", help="the embedded local Kafka (KRaft, loopback)")
    stack = p.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    for action, text in [("up", "start Kafka (format on first use) and create the topics"),
                         ("down", "stop Kafka cleanly"),
                         ("status", "print the bootstrap address if Kafka is running")]:
        a = stack.add_parser(action, help=text)
        add_settings_flags(a, StackSettings)
        a.set_defaults(func=_stack)

    from workers.bench.pipeline import BenchSettings

    p = bench.add_parser("pipeline", help="posts/s of the pipeline (stages off) vs a bare kafka-python loop")
    add_settings_flags(p, BenchSettings)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=_bench)

    from workers.bench.rebalance import RebalanceBenchSettings

    p = bench.add_parser("rebalance", help="what group changes cost the stream: members join and leave a running "
                         "group under a steady feed, eager vs cooperative-sticky (gaps, evictions, duplicates, lost)")
    add_settings_flags(p, RebalanceBenchSettings)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=_bench_rebalance)


def _run(args: argparse.Namespace) -> int:
    from workers.driver.pipeline import run_worker

    return run_worker(settings_from_args(WorkerSettings, args))


def _produce(args: argparse.Namespace) -> int:
    from workers.kafka_clients.preflight import check_kafka
    from workers.devstack.produce import read_lines, send_lines

    if not args.file.is_file():
        raise SettingsError(f"no file {args.file}: pass --file with a JSONL file of posts (one JSON object per "
                            f"line), e.g. samples/posts.jsonl")
    s = settings_from_args(KafkaClientSettings, args)
    check_kafka(s)
    n = send_lines(s, args.topic, read_lines(args.file))
    print(f"sent {n} messages to {args.topic}")
    return 0


def _consume(args: argparse.Namespace) -> int:
    from workers.devstack.consume import ConsumeSettings, consume

    return consume(settings_from_args(ConsumeSettings, args), args.topic)


def _stack(args: argparse.Namespace) -> int:
    from workers.devstack.kafka_stack import KafkaStack, create_topics

    s = settings_from_args(StackSettings, args)
    if s.brokers > 1 or (s.kafka_dir / "cluster.json").exists():
        if s.brokers == 1 and args.stack_command == "up":  # the size stays with the data dir: say so
            print(f"note: {s.kafka_dir} holds a multi-broker cluster (made with --brokers N), which keeps its own "
                  f"ports; for the single broker on 127.0.0.1:9092: `lrsa stack down`, remove {s.kafka_dir}, "
                  f"`lrsa stack up` (or use --kafka-dir DIR)", file=sys.stderr)
        return _cluster(args.stack_command, s)
    stack = KafkaStack(s.kafka_dir, s.kafka_port, s.kafka_controller_port, s.kafka_heap)
    if args.stack_command == "up":
        bootstrap = stack.up()
        create_topics(bootstrap, [t for t in s.kafka_topics.split(",") if t], s.kafka_partitions)
        _announce(bootstrap)
    elif args.stack_command == "down":
        stack_env.remove()
        print("stopped" if stack.down() else "not running")
    else:
        if stack.running_pid() is None:
            print("not running")
            return 1
        print(stack.bootstrap)
    return 0


def _announce(bootstrap: str) -> None:
    """The address on stdout (scripts read it); where the other commands will find it on stderr."""
    print(bootstrap)
    path = stack_env.write(bootstrap)
    if path is not None:
        print(f"address written to {path}: every lrsa command uses it unless --bootstrap-servers or "
              f"LRSA_BOOTSTRAP_SERVERS says otherwise (a shell can `source` it)", file=sys.stderr)


def _cluster(action: str, s: StackSettings) -> int:
    """`lrsa stack up|down|status` of a multi-broker cluster (workers/devstack/kafka_cluster.py)."""
    from workers.devstack.kafka_cluster import KafkaCluster
    from workers.devstack.kafka_stack import create_topics

    cluster = KafkaCluster(s.kafka_dir, s.brokers, s.kafka_heap)
    if action == "up":
        bootstrap = cluster.up()
        create_topics(bootstrap, [t for t in s.kafka_topics.split(",") if t], s.kafka_partitions, cluster.replication)
        _announce(bootstrap)
    elif action == "down":
        stack_env.remove()
        print("stopped" if cluster.down() else "not running")
    else:
        running = cluster.running()
        if not running:
            print("not running")
            return 1
        print(f"{cluster.bootstrap} ({len(running)}/{len(cluster.nodes)} brokers running)")
    return 0


def _bench_rebalance(args: argparse.Namespace) -> int:
    from workers.bench.rebalance import RebalanceBenchSettings, run_bench

    return run_bench(settings_from_args(RebalanceBenchSettings, args), as_json=args.json)


def _bench(args: argparse.Namespace) -> int:
    from workers.bench.pipeline import BenchSettings, run_bench

    return run_bench(settings_from_args(BenchSettings, args), as_json=args.json)

"""The streaming worker (`lrsa run`) and the services beside it, in rooms by what they own.

    ingest/         one consumer-group member's data path: poll, validate, batch, emit, commit
    stages/         the stage API and the stages behind it (rationale, score, the gate), as Ray actor pools
    driver/         the `lrsa run` driver: Ray start-up, pools and their autoscaler, control endpoint
    kafka_clients/  the one way Kafka clients are built (security, preflight checks)
    aggregate/      `lrsa aggregate`: entity windows and shift alerts over the output topic
    bench/          the streaming benchmarks (`lrsa bench pipeline|scaling|aggregate`)
    devstack/       the embedded dev stack: Kafka launcher (one node or a cluster), produce, consume

Beside the rooms: `config.py` (the settings of `lrsa run`), `metrics.py` (the worker's Prometheus
metrics, shared by the ingest actors, the pools and the driver) and the command modules `cli.py`,
`aggregate_cli.py`, `control_cli.py`, which compose the rooms into `lrsa` commands.
tests/project/test_layering.py holds one rule per room: what it may import.
"""

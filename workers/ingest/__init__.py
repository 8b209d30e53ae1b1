"""The ingest room: one consumer-group member's data path, end to end (actor.py), and the parts it
owns: the Kafka- and Ray-free batch scheduler, the output committer (sends, acknowledgements,
offsets, transactions), per-partition offsets, the member's transactional id and the result record.

May import: workers.stages (the stage API and the pool client), workers.kafka_clients,
workers.config, workers.metrics, the core `lrsa`.
"""

"""The aggregate room: `lrsa aggregate`, the brand-monitoring service over the output topic
(service.py, on Quix Streams) and its settings (config.py). The window and shift-detector logic
itself is Kafka-free and lives in the core (lrsa/aggregates.py, lrsa/shift.py), shared with the
dashboard.

May import: workers.kafka_clients, workers.config, the core `lrsa`.
"""

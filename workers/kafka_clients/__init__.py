"""The kafka_clients room: Kafka clients built the one way every command needs them (clients.py),
the security settings and Quix Streams' connection (security.py), and the fail-fast checks of an
address or topic (preflight.py).

May import: workers.config (the connection settings) and the core `lrsa`.
"""

"""Kafka fixtures (owned by the streaming backbone)."""

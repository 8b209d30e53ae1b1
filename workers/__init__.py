"""Streaming workers: Ray actors, Kafka I/O, offsets, backpressure, metrics, the `lrsa run` entry."""

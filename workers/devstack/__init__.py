"""The devstack room: the embedded local Kafka (kafka_stack.py one KRaft node, kafka_cluster.py
several on loopback) from the jars deploy/kafka/pom.xml fetches, and the tools that feed and read
topics (`lrsa produce`, `lrsa consume`).

May import: workers.kafka_clients, workers.config, the core `lrsa`.
"""

"""The driver room: what the `lrsa run` process owns besides its actors: Ray start-up and
supervision (pipeline.py), the stage pools (pools.py) sized by the autoscaler (autoscaler.py), the
control and health endpoint (control.py, control_settings.py, control_bounds.py) and the metrics
targets file (metrics_sd.py).

May import: workers.ingest, workers.stages, workers.kafka_clients, workers.config,
workers.metrics, the core `lrsa`.
"""

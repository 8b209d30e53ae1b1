"""The stages room: the stage API (api.py), stage actors and their pool client (pool.py), starting
actors with deadlines (actor_start.py), the rationale gate in the actors (gate.py), the stages
themselves (rationale.py, score.py), the score stage's circuit breaker and the settings each stage
actor receives (settings.py).

May import: only this room and the core `lrsa` (no Kafka).
"""

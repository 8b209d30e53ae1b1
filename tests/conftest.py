"""Shared pytest set-up. Fixtures live in plugin modules owned by each area."""

from __future__ import annotations

pytest_plugins = [
    "fixtures_data",
    "fixtures_kafka",
    "fixtures_triton",
]

"""A score-stage stand-in that takes the scorer's settings like ScoreProcessor does and writes what
it received, and what its own process environment says, into each post's rationale (JSON)."""

from __future__ import annotations

import json
import os
import socket

from workers.stages.score import ScorerSettings
from workers.stages.api import WorkItem


class SettingsProbe:
    name = "score"
    settings_class = ScorerSettings

    def __init__(self, settings: ScorerSettings | None = None) -> None:
        self.settings = settings or ScorerSettings()

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        import ray

        seen = {"url": self.settings.url, "checkpoint": str(self.settings.checkpoint),
                "timeout_s": self.settings.timeout_s, "headers": self.settings.headers,
                "env_url": os.environ.get("LRSA_SCORER_URL"), "env_timeout": os.environ.get("LRSA_SCORER_TIMEOUT_S"),
                "node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}
        for item in items:
            item.rationale = json.dumps(seen)
        return items

    def versions(self) -> dict[str, str]:
        return {"slm": "probe"}

    def healthy(self) -> bool:
        return True

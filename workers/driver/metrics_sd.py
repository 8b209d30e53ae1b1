"""The worker's metrics targets as a Prometheus file_sd file (`lrsa run --metrics-sd-file PATH`).

The driver serves its own /metrics on `--metrics-port`; each stage actor serves its processor's
metrics (the scorer's circuit and latency, the rationale engine's tokens and cache) on a free port
of `--metrics-host`, a port that changes whenever a pool grows, shrinks or replaces an actor. The
driver writes every current target into one JSON file, in the format of Prometheus'
`file_sd_configs`, and rewrites it (atomically) when the set changes; Prometheus re-reads the file
by itself. deploy/prometheus/prometheus.yml scrapes it as job "lrsa-stages" beside the driver's
"lrsa-worker".
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def targets_document(host: str, driver_port: int | None, stages: dict[str, list[int]]) -> list[dict]:
    """file_sd groups: one per stage (label stage=<name>), and the driver's (label role=driver)."""
    groups = [{"targets": [f"{host}:{p}" for p in sorted(ports)], "labels": {"stage": name, "role": "stage"}}
              for name, ports in sorted(stages.items()) if ports]
    if driver_port:
        groups.append({"targets": [f"{host}:{driver_port}"], "labels": {"role": "driver"}})
    return groups


class TargetsFile:
    """Writes the targets to `path` when they changed since the last write (atomic rename)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last: str | None = None

    def update(self, host: str, driver_port: int | None, stages: dict[str, list[int]]) -> bool:
        text = json.dumps(targets_document(host, driver_port, stages), indent=1) + "\n"
        if text == self._last:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)
        self._last = text
        return True

"""`lrsa run --exit-when-idle S`: the driver stops cleanly once the input is drained (every
partition committed to its end, asked of the broker, not the members) and nothing arrived for S
seconds."""

from __future__ import annotations

import logging
import time

from workers.config import WorkerSettings
from workers.driver.ingest_fleet import IngestFleet

log = logging.getLogger(__name__)


class IdleExit:
    def __init__(self, s: WorkerSettings) -> None:
        self.s = s
        self._since: float | None = None  # monotonic: when the input went quiet
        self._group_lag = None

    def due(self, fleet: IngestFleet) -> bool:
        """Called each tick: True once the input has been drained and quiet for --exit-when-idle."""
        if self.s.exit_when_idle is None:
            return False
        quiet = fleet.quiet_for(self.s.metrics_interval_s)
        if quiet is None or not self._group_drained():
            self._since = None
            return False
        self._since = self._since or time.monotonic() - quiet
        return time.monotonic() - self._since >= self.s.exit_when_idle

    def _group_drained(self) -> bool:
        from workers.kafka_clients.clients import GroupLag

        try:
            if self._group_lag is None:
                self._group_lag = GroupLag(self.s, self.s.input_topic, self.s.group_id)
            return sum(self._group_lag.lag().values()) == 0
        except Exception as e:  # broker hiccup: not drained as far as we know
            log.debug("group lag unavailable: %s", e)
            return False

    def close(self) -> None:
        if self._group_lag is not None:
            self._group_lag.close()

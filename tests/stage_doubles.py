"""A stand-in rationale stage for pipeline tests (the real engines have their own tests).

It echoes a rationale, can be slowed down (LRSA_TEST_STAGE_DELAY_S per post) and can play a
downstream outage: while the file LRSA_TEST_STAGE_DOWN_FILE exists it raises TransientError.
Loaded by the worker's Ray actors by dotted path, so tests put this folder on PYTHONPATH.
"""

from __future__ import annotations

import os
import time

from workers.stage_api import TransientError, WorkItem


class EchoProcessor:
    name = "rationale"

    def __init__(self) -> None:
        self.delay_s = float(os.environ.get("LRSA_TEST_STAGE_DELAY_S", "0"))
        self.down_file = os.environ.get("LRSA_TEST_STAGE_DOWN_FILE")

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        if not self.healthy():
            raise TransientError("downstream unreachable (test outage switch is on)")
        time.sleep(self.delay_s * len(items))
        for item in items:
            item.rationale = f"echo: {item.post.text[:24]}"
        return items

    def versions(self) -> dict[str, str]:
        return {"rationale": "echo-test"}

    def healthy(self) -> bool:
        return not (self.down_file and os.path.exists(self.down_file))

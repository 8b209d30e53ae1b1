"""A stand-in rationale stage for pipeline tests (the real engines have their own tests).

It echoes a rationale, can be slowed down (LRSA_TEST_STAGE_DELAY_S per post) and can play a
downstream outage: while the file LRSA_TEST_STAGE_DOWN_FILE exists it raises TransientError.
Loaded by the worker's Ray actors by dotted path, so tests put this folder on PYTHONPATH.
"""

from __future__ import annotations

import os
import time

from workers.stages.api import TransientError, WorkItem


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


def _record(name: str, line: str) -> None:
    """Append a line to LRSA_TEST_RECORD_DIR/<name> (one file per stage; actors are processes)."""
    folder = os.environ.get("LRSA_TEST_RECORD_DIR")
    if folder:
        with open(os.path.join(folder, name), "a") as f:
            f.write(line + "\n")


class RecordingEchoProcessor(EchoProcessor):
    """The echo rationale stage that also records the id of every post it is given."""

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        for item in items:
            _record("rationale.txt", item.post.id)
        return super().process(items)


class GateScoreDouble:
    """A stand-in score stage for rationale-gate tests: the post's text says how sure the text-only
    scoring is. Text "<term> is <c> sure": without a rationale, one neutral aspect <term> (the
    first word) with confidence c; "<term> is none sure": no aspect (no_aspect_certainty from
    "none=<p>" when the text has it). With a rationale: one positive aspect <term>, confidence 0.99.
    Records "<post id> <text|rationale>" per post scored."""

    name = "score"

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        from lrsa.schemas import Aspect

        for item in items:
            words = item.post.text.split()
            term, level = words[0], words[2]
            _record("score.txt", f"{item.post.id} {'rationale' if item.rationale else 'text'}")
            if item.rationale:
                item.aspects = [Aspect(term=term, start=0, end=len(term), sentiment="positive", confidence=0.99)]
            elif level == "none":
                item.aspects = []
                given = [w.split("=", 1)[1] for w in words if w.startswith("none=")]
                item.no_aspect_certainty = float(given[0]) if given else None
            else:
                item.aspects = [Aspect(term=term, start=0, end=len(term), sentiment="neutral",
                                       confidence=float(level))]
            item.timings_ms[self.name] = 1.0  # as the real scorer times itself
        return items

    def versions(self) -> dict[str, str]:
        return {"slm": "gate-double"}

    def healthy(self) -> bool:
        return True


class PoisonProcessor(EchoProcessor):
    """An echo stage that fails every batch holding a post whose id is in LRSA_TEST_POISON_IDS
    (comma separated): with NonRetryable when LRSA_TEST_POISON_KIND is "nonretryable", else with
    TransientError (a failure a retry never fixes, while healthy() stays True). It counts the calls
    it saw in LRSA_TEST_POISON_LOG (one line per batch: its size and whether it failed)."""

    def __init__(self) -> None:
        super().__init__()
        self.poison = set(filter(None, os.environ.get("LRSA_TEST_POISON_IDS", "").split(",")))
        self.kind = os.environ.get("LRSA_TEST_POISON_KIND", "nonretryable")
        self.calls_log = os.environ.get("LRSA_TEST_POISON_LOG")

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        from workers.stages.api import NonRetryable

        bad = sorted(it.post.id for it in items if it.post.id in self.poison)
        if self.calls_log:
            with open(self.calls_log, "a") as f:
                f.write(f"{len(items)} {'fail' if bad else 'ok'}\n")
        if bad:
            if self.kind == "nonretryable":
                raise NonRetryable(f"cannot process post {bad[0]}")
            raise TransientError(f"flaky on post {bad[0]}")
        return super().process(items)


class DyingProcessor(EchoProcessor):
    """An echo stage whose process exits (the actor's worker dies) on any batch while the file
    LRSA_TEST_DIE_FILE exists: Ray restarts it (max_restarts) until its restarts are spent."""

    def process(self, items: list[WorkItem]) -> list[WorkItem]:
        die = os.environ.get("LRSA_TEST_DIE_FILE")
        if die and os.path.exists(die):
            os._exit(1)
        return super().process(items)

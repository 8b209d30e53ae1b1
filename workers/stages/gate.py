"""The rationale gate in the stage actors (`lrsa run --rationale-gate THRESHOLD`).

With the gate on the chain is prescore -> rationale -> score:

- "prescore" is the score processor on every post, text only (no rationale yet); then each post's
  certainty (`lrsa.gate.post_certainty`) is compared with the threshold and the decision is set
  on the item (`WorkItem.rationale_wanted`).
- "rationale" and "score" work only on the posts the gate sent on; the others pass through
  untouched (their processor never sees them) and keep their text-only aspects.

Which stage decides and which follow is configuration (`GateRole`, from
`StageSpec.gate_role` from `WorkerSettings.stage_settings()`), not names the stage runner checks.

Without the gate no item carries a decision (rationale_wanted None) and every stage takes every
post, as before. The decisions are counted in the prescore actors' own Prometheus metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from lrsa.gate import post_certainty, sends
from workers.stages.api import GateRole, WorkItem

PRESCORE = "prescore"  # the timing key a deciding stage's work is kept under

DECISIONS = Counter("lrsa_rationale_gate_posts_total", "Posts judged by the rationale gate after text-only "
                    "scoring: sent to the rationale stage (rationale) or kept text only (text_only)",
                    ["decision"])
CERTAINTY = Histogram("lrsa_rationale_gate_certainty", "Certainty of a post scored from its text alone "
                      "(smallest aspect confidence; P(no aspect) for posts without one)",
                      buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0))
for _decision in ("rationale", "text_only"):  # known label values at 0 from the first scrape
    DECISIONS.labels(_decision)


def selected(role: GateRole, items: list[WorkItem]) -> list[int]:
    """Indices of the items a stage works on: all, except in a stage that follows the gate,
    which skips the posts the gate kept text only."""
    if not role.follows:
        return list(range(len(items)))
    return [i for i, item in enumerate(items) if item.rationale_wanted is not False]


def after_prescore(items: list[WorkItem], threshold: float | None, processor_name: str | None = None) -> int:
    """Decide per post whether it goes to the rationale stage; returns how many do.

    The score processor timed its work under its own name ("score"); here that is the prescore's
    time, so the key moves: a post's "score" timing then means it was re-scored with a rationale."""
    sent = 0
    for item in items:
        if processor_name and processor_name != PRESCORE:
            ms = item.timings_ms.pop(processor_name, None)
            if ms is not None:
                item.timings_ms[PRESCORE] = ms
        certainty = post_certainty(item.aspects, item.no_aspect_certainty)
        item.rationale_wanted = sends(certainty, threshold)
        sent += item.rationale_wanted
        CERTAINTY.observe(certainty)
    DECISIONS.labels("rationale").inc(sent)
    DECISIONS.labels("text_only").inc(len(items) - sent)
    return sent

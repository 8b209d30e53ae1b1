"""The one retry back-off policy of the project: exponential, capped, with a chosen jitter.

    Backoff(initial_s, max_s).delay(attempt)  =  min(max_s, initial_s * factor ** attempt) * U(1 - jitter, 1)

attempt counts from 0 (the first retry). jitter 0 waits the capped delay exactly; 1 is "full
jitter" (anywhere from 0 to the capped delay); 0.5 keeps at least half. Used where a retry is
*scheduled* (the batch scheduler's retry_at, the output committer's re-send time, the dashboard's
reconnect wait) as well as where a call is retried in place (lrsa.rationale/score clients through
workers.stages.circuit.call_with_retries). A library such as tenacity retries a blocking call; most of
these retries are deadlines in an event loop that must not block, so the policy is this small
value object, and `draw` is injectable so tests neither sleep nor guess.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

MAX_EXPONENT = 32  # beyond this the cap has long been reached; keeps factor ** attempt finite


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 5.0
    factor: float = 2.0
    jitter: float = 1.0  # share of the delay drawn at random: 0 none, 1 full

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid back-off {self}")

    def cap(self, attempt: int) -> float:
        """The delay before jitter: initial_s * factor ** attempt, at most max_s."""
        return min(self.max_s, self.initial_s * self.factor ** min(max(attempt, 0), MAX_EXPONENT))

    def delay(self, attempt: int, draw: Callable[[float, float], float] = random.uniform) -> float:
        cap = self.cap(attempt)
        return cap if self.jitter == 0 else cap * draw(1.0 - self.jitter, 1.0)

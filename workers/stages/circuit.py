"""Failure handling for calls to a downstream service: retries with backoff, and a circuit breaker.

The breaker stops a pool of workers from hammering a server that is down: after `failure_threshold`
consecutive failed calls it opens and callers fail fast for `reset_timeout_s`; then one trial call
is let through (half-open) and its outcome closes or re-opens the circuit.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from lrsa.backoff import Backoff

T = TypeVar("T")


class CircuitState(enum.IntEnum):
    """Exported as a gauge: 0 closed, 1 half-open, 2 open."""

    closed = 0
    half_open = 1
    open = 2


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    reset_timeout_s: float = 5.0
    on_change: Callable[[CircuitState], None] | None = None
    clock: Callable[[], float] = time.monotonic
    _state: CircuitState = field(default=CircuitState.closed, init=False)
    _failures: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _trial_in_flight: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial call at a time."""
        with self._lock:
            if self._state is CircuitState.open:
                if self.clock() - self._opened_at < self.reset_timeout_s:
                    return False
                self._set(CircuitState.half_open)
            if self._state is CircuitState.half_open:
                if self._trial_in_flight:
                    return False
                self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._trial_in_flight = False
            self._set(CircuitState.closed)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._state is CircuitState.half_open or self._failures >= self.failure_threshold:
                self._opened_at = self.clock()
                self._set(CircuitState.open)

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            if self.on_change:
                self.on_change(state)


def call_with_retries(fn: Callable[[], T], *, retries: int, backoff: Backoff,
                      retryable: Callable[[Exception], bool],
                      on_retry: Callable[[Exception, int], None] | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn`, retrying up to `retries` times on retryable errors; re-raise the last one."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as e:
            if attempt == retries or not retryable(e):
                raise
            if on_retry:
                on_retry(e, attempt)
            sleep(backoff.delay(attempt))
    raise AssertionError("unreachable")

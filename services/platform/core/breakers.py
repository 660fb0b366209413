"""A circuit breaker counting the failures of a sliding window (pybreaker's own counts
consecutive failures, however old): `windowed_breaker("inventory", failures=5,
window_seconds=60, open_seconds=60)` opens after 5 failures within 60 s, fails fast for 60 s,
then lets one trial call decide (half-open). A success resets the count, as pybreaker does.

Used as a context manager around one attempt (`with breaker.calling(): ...`): it raises
`pybreaker.CircuitBreakerError` at once while open; an exception out of the block counts as a
failure, anything else as a success. The breaker lives as long as the process's client of the
other party, so every request the process serves shares its count.
"""

from __future__ import annotations

import time

import pybreaker


class FailuresInWindow(pybreaker.CircuitMemoryStorage):
    """pybreaker's in-memory state, its failure counter counting only the failures of the last
    `window` seconds."""

    def __init__(self, window: float) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self.window = window
        self._failures: list[float] = []

    def _recent(self) -> list[float]:
        horizon = time.monotonic() - self.window
        self._failures = [at for at in self._failures if at > horizon]
        return self._failures

    def increment_counter(self) -> None:
        self._recent().append(time.monotonic())

    def reset_counter(self) -> None:
        self._failures = []

    @property
    def counter(self) -> int:
        return len(self._recent())


def windowed_breaker(
    name: str, *, failures: int, window_seconds: float, open_seconds: float
) -> pybreaker.CircuitBreaker:
    """Open after `failures` failures within `window_seconds`, for `open_seconds`."""
    return pybreaker.CircuitBreaker(
        fail_max=failures,
        reset_timeout=open_seconds,
        state_storage=FailuresInWindow(window_seconds),
        name=name,
    )

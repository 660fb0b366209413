"""The kit's circuit breaker (services/platform/core/breakers.py): it opens after N failures
within the window, not after N consecutive failures however old; a success resets the count."""

from __future__ import annotations

import time

import pybreaker
import pytest

from services.platform import windowed_breaker


def fail(breaker: pybreaker.CircuitBreaker) -> None:
    with pytest.raises((RuntimeError, pybreaker.CircuitBreakerError)), breaker.calling():
        raise RuntimeError("down")


def succeed(breaker: pybreaker.CircuitBreaker) -> None:
    with breaker.calling():
        pass


def test_it_opens_after_the_failures_within_the_window() -> None:
    breaker = windowed_breaker("test", failures=3, window_seconds=60, open_seconds=60)
    for _ in range(2):
        fail(breaker)
    assert breaker.current_state == pybreaker.STATE_CLOSED
    fail(breaker)
    assert breaker.current_state == pybreaker.STATE_OPEN
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        pass


def test_failures_older_than_the_window_do_not_count() -> None:
    breaker = windowed_breaker("test", failures=3, window_seconds=0.2, open_seconds=60)
    for _ in range(2):
        fail(breaker)
    time.sleep(0.25)
    fail(breaker)
    assert (breaker.current_state, breaker.fail_counter) == (pybreaker.STATE_CLOSED, 1)


def test_a_success_resets_the_count() -> None:
    breaker = windowed_breaker("test", failures=3, window_seconds=60, open_seconds=60)
    for _ in range(2):
        fail(breaker)
    succeed(breaker)
    for _ in range(2):
        fail(breaker)
    assert breaker.current_state == pybreaker.STATE_CLOSED

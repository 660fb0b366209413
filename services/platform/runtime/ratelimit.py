"""Fixed-window rate limits in Redis, shared by every replica of a service (and the gateway).

A window starts with the first hit on a key and lasts `window_seconds`. INCR, the window's
expiry (`PEXPIRE … NX`: set only by the first hit) and the remaining time run in one MULTI/EXEC
transaction, so concurrent hits are counted exactly and a counter can never lose its expiry.
(A transaction rather than a Lua script so that fakeredis, in embedded mode, runs it too.)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from redis.asyncio import Redis

from services.platform.core.problems import Problem

_RULE = re.compile(
    r"^\s*(?P<limit>\d+)\s*/\s*(?P<count>\d*)\s*"
    r"(?P<unit>s|sec|second|m|min|minute|h|hr|hour|d|day)s?\s*$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_UNIT_SECONDS |= {"h": 3600, "hr": 3600, "hour": 3600, "d": 86400, "day": 86400}


@dataclass(frozen=True)
class Rule:
    """`limit` hits per `window_seconds`; `Rule.parse("3/10min")`, `Rule.parse("5/minute")`."""

    limit: int
    window_seconds: int

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.match(text)
        if not match:
            raise ValueError(f"rate limit {text!r}: expected e.g. 5/minute, 3/10min, 100/1h")
        limit = int(match["limit"])
        window = int(match["count"] or 1) * _UNIT_SECONDS[match["unit"].lower()]
        if limit < 1 or window < 1:
            raise ValueError(f"rate limit {text!r}: limit and window must be positive")
        return cls(limit, window)


@dataclass(frozen=True)
class RateLimitState:
    """The counter after a hit, for the X-RateLimit-* response headers."""

    limit: int
    remaining: int
    reset_seconds: int  # until the window ends
    allowed: bool

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


async def hit(redis: Redis, key: str, limit: int, window_seconds: float) -> RateLimitState:
    """Count one hit on `key` and report whether it is within `limit` per window."""
    window_ms = max(1, int(window_seconds * 1000))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.pexpire(key, window_ms, nx=True)
        pipe.pttl(key)
        count, _, ttl_ms = await pipe.execute()
    if ttl_ms < 0:  # no expiry (cannot happen inside MULTI, but never leave a counter forever)
        await redis.pexpire(key, window_ms)
        ttl_ms = window_ms
    return RateLimitState(
        limit=limit,
        remaining=max(0, limit - int(count)),
        reset_seconds=max(1, math.ceil(int(ttl_ms) / 1000)),
        allowed=int(count) <= limit,
    )


async def refund_rate_limit(redis: Redis, key: str) -> None:
    """Take back one hit on `key`: for limits that count only attempts that fail (a login whose
    password was right). Admission stays atomic (every attempt is a `hit` first), so a burst
    of parallel attempts can never slip past the limit before the failures are counted."""
    if int(await redis.decr(key)) < 0:  # the window ended meanwhile: leave no counter behind
        await redis.delete(key)


async def rate_limit(redis: Redis, key: str, limit: int, window_seconds: float) -> RateLimitState:
    """Count a hit; raise Problem 429 with Retry-After once `limit` per window is exceeded.

    Returns the state so that callers can add `state.headers()` to a successful response.
    """
    state = await hit(redis, key, limit, window_seconds)
    if not state.allowed:
        raise Problem(
            429,
            "Too Many Requests",
            f"Rate limit of {limit} requests per {window_seconds:g} s exceeded; "
            f"retry in {state.reset_seconds} s.",
            headers=state.headers(),
        )
    return state

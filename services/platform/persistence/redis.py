"""Redis: the connection, key naming and a small JSON cache.

Clients are created with `decode_responses=True`: everything this platform keeps in Redis is
text (JSON documents, counters, flags, ids), so callers read `str`, never `bytes`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import fakeredis
from pydantic_core import to_jsonable_python
from redis.asyncio import Redis

from services.platform.core.settings import Settings

T = TypeVar("T")

# One in-process server for the whole process: in embedded mode all services share it, as they
# would share a real Redis (auth's token blacklist must be visible to every service).
_EMBEDDED_SERVER = fakeredis.FakeServer()


def connect_redis(settings: Settings) -> Redis:
    """A client for `settings.redis_url`, or the process-wide fakeredis when it is None."""
    if settings.redis_url is None:
        return fakeredis.FakeAsyncRedis(server=_EMBEDDED_SERVER, decode_responses=True)
    client: Redis = Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=5,
    )
    return client


class Keys:
    """Key names under a prefix: `Keys("erp:")("auth", "blacklist", jti)` is
    "erp:auth:blacklist:<jti>"."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: object) -> str:
        return self.prefix + ":".join(str(part) for part in parts)


class JsonCache:
    """JSON values with a TTL, plus tag versions for invalidating a whole family of entries.

    A tagged key embeds the tag's current version; `invalidate(tag)` bumps the version, so every
    entry built under the old one is never read again and simply expires — no key scan needed.
    """

    def __init__(self, redis: Redis, keys: Keys, namespace: str = "cache") -> None:
        self.redis = redis
        self.keys = keys
        self.namespace = namespace

    def key(self, *parts: object) -> str:
        return self.keys(self.namespace, *parts)

    async def get(self, key: str) -> Any | None:
        """The cached value, or None when missing (so do not cache a bare None)."""
        raw = await self.redis.get(key)
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        encoded = json.dumps(to_jsonable_python(value), separators=(",", ":"))
        await self.redis.set(key, encoded, px=max(1, int(ttl_seconds * 1000)))

    async def delete(self, *keys: str) -> int:
        return int(await self.redis.delete(*keys)) if keys else 0

    async def delete_matching(self, pattern: str) -> int:
        """Delete every key matching a glob pattern (SCAN, not KEYS: it does not block Redis)."""
        deleted = 0
        batch: list[str] = []
        async for key in self.redis.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) == 500:
                deleted += await self.delete(*batch)
                batch = []
        return deleted + await self.delete(*batch)

    async def get_or_set(
        self, key: str, ttl_seconds: float, load: Callable[[], Awaitable[T]]
    ) -> Any:
        """The cached value, or `await load()` stored for `ttl_seconds` (returned as JSON data)."""
        cached = await self.get(key)
        if cached is not None:
            return cached
        value = to_jsonable_python(await load())
        if value is not None:
            await self.set(key, value, ttl_seconds)
        return value

    async def tagged_key(self, tag: str, *parts: object) -> str:
        """A key that `invalidate(tag)` retires, e.g. `await cache.tagged_key("products", q)`."""
        version = int(await self.redis.get(self._tag(tag)) or 0)
        return self.key(tag, f"v{version}", *parts)

    async def invalidate(self, tag: str) -> None:
        await self.redis.incr(self._tag(tag))

    def _tag(self, tag: str) -> str:
        return self.keys(self.namespace, "tag", tag)

"""Rate-limit rules, the fixed-window counter (on fakeredis), keys and paging helpers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import fakeredis
import pytest

from services.platform.core.problems import Problem
from services.platform.core.settings import load_settings
from services.platform.persistence.pagination import Page, decode_cursor, encode_cursor
from services.platform.persistence.redis import Keys, connect_redis
from services.platform.runtime.ratelimit import Rule, hit, rate_limit


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [
        ("5/minute", 5, 60),
        ("5/min", 5, 60),
        ("3/10min", 3, 600),
        ("3 / 10 minutes", 3, 600),
        ("100/1h", 100, 3600),
        ("10/s", 10, 1),
        ("1000/day", 1000, 86400),
    ],
)
def test_rules_parse(text: str, limit: int, window: int) -> None:
    assert Rule.parse(text) == Rule(limit, window)


@pytest.mark.parametrize("text", ["", "five/minute", "5", "5/fortnight", "0/minute", "5/0min"])
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        Rule.parse(text)


async def test_window_counts_and_refuses_with_retry_after() -> None:
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    states = [await hit(redis, "k", 2, 30) for _ in range(3)]
    assert [state.allowed for state in states] == [True, True, False]
    assert [state.remaining for state in states] == [1, 0, 0]
    assert states[2].headers()["Retry-After"] == "30"
    assert "Retry-After" not in states[0].headers()
    with pytest.raises(Problem) as raised:
        await rate_limit(redis, "k", 2, 30)
    assert raised.value.status == 429
    assert 0 < await redis.ttl("k") <= 30  # the window is not extended by later hits


async def test_window_resets_after_it_expires() -> None:
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    await rate_limit(redis, "k", 1, 0.05)
    await asyncio.sleep(0.1)
    assert (await rate_limit(redis, "k", 1, 0.05)).remaining == 0


async def test_embedded_redis_is_shared_by_every_service_in_the_process() -> None:
    env = {"ERP_EMBEDDED": "1"}
    auth = connect_redis(load_settings("auth", 8001, env))
    sales = connect_redis(load_settings("sales", 8003, env))
    key = f"test:{uuid4()}"
    await auth.set(key, "revoked")
    assert await sales.get(key) == "revoked"  # text, not bytes
    await auth.delete(key)


def test_keys_join_parts_under_the_prefix() -> None:
    assert Keys("erp:")("auth", "blacklist", 42) == "erp:auth:blacklist:42"


def test_page_offsets_and_meta() -> None:
    page = Page.of(3, 20)
    assert (page.offset, page.limit) == (40, 20)
    assert page.meta(41) == {"page": 3, "per_page": 20, "total": 41, "last_page": 3}
    assert Page.of().meta(0)["last_page"] == 1


@pytest.mark.parametrize(("page", "per_page"), [(0, 15), (1, 0), (1, 101)])
def test_bad_paging_is_400(page: int, per_page: int) -> None:
    with pytest.raises(Problem) as raised:
        Page.of(page, per_page)
    assert raised.value.status == 400


def test_cursor_round_trip() -> None:
    position = {"created_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "id": uuid4()}
    cursor = encode_cursor(position)
    assert not set(cursor) & set("=/+")  # URL-safe, unpadded
    decoded = decode_cursor(cursor, ("created_at", "id"))
    assert decoded == {"created_at": "2025-01-02T03:04:05Z", "id": str(position["id"])}


@pytest.mark.parametrize("cursor", ["", "%%%", "bm90IGpzb24", "WzEsMl0", encode_cursor({"a": 1})])
def test_bad_cursor_is_400(cursor: str) -> None:
    with pytest.raises(Problem) as raised:
        decode_cursor(cursor, ("id",))
    assert raised.value.status == 400

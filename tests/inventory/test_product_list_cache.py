"""The public product list cache has a bounded key space (issue 7, hardening): distinct
queries chosen by a caller (free text, ids, prices, deep pages) are answered from the database
and never stored, so nobody can grow Redis by one key per request (embedded, fakeredis)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from services.inventory import queries
from services.inventory.service import definition
from services.platform.runtime.service import ServiceContext
from tests.support.embedded import StartEmbedded

DISTINCT_QUERIES = 40


@pytest.fixture
async def ctx(embedded: StartEmbedded) -> ServiceContext:
    return (await embedded(definition)).ctx


async def cache_keys(ctx: ServiceContext) -> set[bytes]:
    return {key async for key in ctx.redis.scan_iter(match="*list*")}


async def listing(ctx: ServiceContext, **query: object) -> None:
    arguments: dict[str, object] = {
        "search": None,
        "category_id": None,
        "status": None,
        "min_price": None,
        "max_price": None,
        "page": 1,
        "per_page": 15,
        **query,
    }
    await queries.list_products(ctx, **arguments)  # type: ignore[arg-type]


async def test_distinct_caller_chosen_queries_do_not_create_keys(ctx: ServiceContext) -> None:
    await listing(ctx)  # the canonical first page is cached
    canonical = await cache_keys(ctx)
    assert len(canonical) == 1

    for number in range(DISTINCT_QUERIES):
        await listing(ctx, search=f"probe {number}")
        await listing(ctx, category_id=uuid4())
        await listing(ctx, min_price=f"{number}.00")
        await listing(ctx, max_price=f"{number + 1}.00")
        await listing(ctx, page=queries.MAX_CACHED_PAGE + 1 + number)

    assert await cache_keys(ctx) == canonical


async def test_the_browsing_pages_are_still_cached(ctx: ServiceContext) -> None:
    for page in range(1, queries.MAX_CACHED_PAGE + 1):
        await listing(ctx, page=page)
    await listing(ctx, status="active")
    assert len(await cache_keys(ctx)) == queries.MAX_CACHED_PAGE + 1

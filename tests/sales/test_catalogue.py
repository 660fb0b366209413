"""`catalogue.products_for_order` on the embedded sales service (SQLite), asking a stand-in
for inventory served over real HTTP by uvicorn on a free port: the replica answers first; a
product it lacks is asked of "inventory" and stored; 404 is an answer (absent, not retried,
not counted); 5xx, timeouts and a refused connection are retried and then refused with
`CatalogueUnavailableError`; five failures open the breaker, which then fails fast without a
request. The waits are shortened (`ResiliencePolicy`); the defaults are checked on their own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
import uvicorn
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.platform.runtime.service import ServiceContext
from services.sales import catalogue
from services.sales.catalogue import (
    CatalogueUnavailableError,
    InventoryClient,
    ProductSnapshot,
    ResiliencePolicy,
)
from services.sales.commands import products
from services.sales.service import definition
from services.sales.tables import Product
from tests.support.embedded import StartEmbedded
from tests.support.processes import free_port

FAST = ResiliencePolicy(attempt_timeout_seconds=0.3, first_wait_seconds=0.01, max_wait_seconds=0.04)
UPDATED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass
class FakeInventory:
    """What inventory answers, per product id: a product (200), 404, a status, or no answer in
    time ("slow"); every request is counted."""

    answers: dict[UUID, Any] = field(default_factory=dict)
    hits: Counter[UUID] = field(default_factory=Counter)

    def product(self, product_id: UUID, *, sku: str = "KB-MECH-001", version: int = 3) -> None:
        self.answers[product_id] = {
            "id": str(product_id),
            "sku": sku,
            "name": "Mechanical keyboard",
            "description": None,
            "price": "349.90",
            "currency": "BRL",
            "category_id": None,
            "status": "active",
            "created_at": "2026-11-29T12:00:00Z",
            "updated_at": UPDATED.isoformat().replace("+00:00", "Z"),
            "version": version,
        }

    async def endpoint(self, request: Request) -> Response:
        product_id = UUID(request.path_params["product_id"])
        self.hits[product_id] += 1
        answer = self.answers.get(product_id, 404)
        if answer == "slow":
            await asyncio.sleep(2)
            return Response(status_code=504)
        if isinstance(answer, int):
            return JSONResponse({"status": answer}, status_code=answer)
        return JSONResponse(answer)


@dataclass
class Served:
    inventory: FakeInventory
    url: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    fake = FakeInventory()
    app = Starlette(routes=[Route("/api/v1/products/{product_id}", fake.endpoint)])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=1
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the stand-in for inventory did not start"
        await asyncio.sleep(0.01)
    try:
        yield Served(fake, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def ctx(embedded: StartEmbedded) -> ServiceContext:
    return (await embedded(definition)).ctx


@pytest.fixture
def client(ctx: ServiceContext, served: Served) -> InventoryClient:
    return InventoryClient(served.url, ctx.http, FAST)


async def for_order(
    ctx: ServiceContext, client: InventoryClient, *ids: UUID
) -> dict[UUID, ProductSnapshot]:
    async with ctx.unit_of_work() as uow:
        found = await catalogue.products_for_order(uow, client, ids)
        await uow.commit()
    return found


async def stored(ctx: ServiceContext, product_id: UUID) -> Product | None:
    async with ctx.database.session() as session:
        return (
            await session.scalars(select(Product).where(Product.product_id == product_id))
        ).first()


async def replicate(ctx: ServiceContext, row: products.ReplicaRow) -> None:
    async with ctx.unit_of_work() as uow:
        await products.replicate(uow, row)
        await uow.commit()


def row(product_id: UUID, *, version: int = 1, deleted: bool = False) -> products.ReplicaRow:
    return products.ReplicaRow(
        product_id=product_id,
        sku="MOUSE-01",
        name="Mouse",
        price=Decimal("59.90"),
        currency="BRL",
        status="active",
        version=version,
        deleted=deleted,
        updated_at=UPDATED,
    )


async def test_a_product_inventory_has_is_returned_and_stored(
    ctx: ServiceContext, client: InventoryClient, served: Served
) -> None:
    product_id = uuid4()
    served.inventory.product(product_id)

    found = await for_order(ctx, client, product_id)

    expected = ProductSnapshot(
        product_id, "KB-MECH-001", "Mechanical keyboard", Decimal("349.90"), "BRL", "active", 3
    )
    assert found == {product_id: expected}
    row = await stored(ctx, product_id)
    assert row is not None
    assert (row.version, row.deleted, row.updated_at) == (3, False, UPDATED)
    # Next time the replica answers: inventory is not asked again.
    assert await for_order(ctx, client, product_id) == {product_id: expected}
    assert served.inventory.hits[product_id] == 1


async def test_the_replica_answers_without_asking_and_a_tombstone_stays_absent(
    ctx: ServiceContext, client: InventoryClient, served: Served
) -> None:
    kept, deleted = uuid4(), uuid4()
    await replicate(ctx, row(kept, version=2))
    await replicate(ctx, row(deleted, version=4, deleted=True))
    served.inventory.product(deleted)  # would answer, if it were asked

    found = await for_order(ctx, client, kept, deleted, kept)

    assert list(found) == [kept]
    assert found[kept].price == Decimal("59.90")
    assert found[kept].version == 2
    assert served.inventory.hits.total() == 0


async def test_a_product_inventory_does_not_know_is_absent_and_costs_no_retry(
    ctx: ServiceContext, client: InventoryClient, served: Served
) -> None:
    known, unknown = uuid4(), uuid4()
    served.inventory.product(known)

    found = await for_order(ctx, client, known, unknown)

    assert list(found) == [known]
    assert served.inventory.hits[unknown] == 1
    assert await stored(ctx, unknown) is None
    assert client.breaker.fail_counter == 0


@pytest.mark.parametrize("answer", [500, 503, "slow"])
async def test_a_failing_inventory_is_asked_three_times_then_refused(
    ctx: ServiceContext, client: InventoryClient, served: Served, answer: Any
) -> None:
    product_id = uuid4()
    served.inventory.answers[product_id] = answer

    with pytest.raises(CatalogueUnavailableError, match="3 attempts"):
        await for_order(ctx, client, product_id)

    assert served.inventory.hits[product_id] == 3
    assert client.breaker.fail_counter == 3
    assert await stored(ctx, product_id) is None


async def test_a_body_that_is_not_the_product_asked_for_is_a_failure(
    ctx: ServiceContext, client: InventoryClient, served: Served
) -> None:
    product_id, other = uuid4(), uuid4()
    served.inventory.product(other)
    served.inventory.answers[product_id] = served.inventory.answers[other]

    with pytest.raises(CatalogueUnavailableError, match="another product"):
        await for_order(ctx, client, product_id)
    assert await stored(ctx, product_id) is None
    assert await stored(ctx, other) is None


async def test_five_failures_open_the_breaker_which_then_fails_fast(
    ctx: ServiceContext, client: InventoryClient, served: Served
) -> None:
    broken, healthy = uuid4(), uuid4()
    served.inventory.answers[broken] = 500
    served.inventory.product(healthy)

    with pytest.raises(CatalogueUnavailableError, match="3 attempts"):
        await for_order(ctx, client, broken)
    # The fifth failed attempt opens it: the lookup stops there, without its third attempt.
    with pytest.raises(CatalogueUnavailableError, match="circuit open"):
        await for_order(ctx, client, broken)
    assert served.inventory.hits[broken] == 5
    assert client.breaker.current_state == "open"

    # Open: not even a healthy product is asked for.
    with pytest.raises(CatalogueUnavailableError, match="circuit open"):
        await for_order(ctx, client, healthy)
    assert served.inventory.hits[healthy] == 0


async def test_the_breaker_closes_again_after_a_successful_trial(
    ctx: ServiceContext, served: Served
) -> None:
    policy = ResiliencePolicy(
        attempts=1, attempt_timeout_seconds=0.3, breaker_failures=2, breaker_open_seconds=0.2
    )
    client = InventoryClient(served.url, ctx.http, policy)
    broken, healthy = uuid4(), uuid4()
    served.inventory.answers[broken] = 500
    served.inventory.product(healthy)
    for _ in range(2):
        with pytest.raises(CatalogueUnavailableError):
            await for_order(ctx, client, broken)
    assert client.breaker.current_state == "open"

    await asyncio.sleep(0.3)
    assert list(await for_order(ctx, client, healthy)) == [healthy]  # the half-open trial
    assert client.breaker.current_state == "closed"


async def test_failures_older_than_the_window_do_not_count(
    ctx: ServiceContext, served: Served
) -> None:
    policy = ResiliencePolicy(
        attempts=1, attempt_timeout_seconds=0.3, breaker_failures=3, breaker_window_seconds=0.3
    )
    client = InventoryClient(served.url, ctx.http, policy)
    broken = uuid4()
    served.inventory.answers[broken] = 500
    for _ in range(2):
        with pytest.raises(CatalogueUnavailableError):
            await for_order(ctx, client, broken)
    await asyncio.sleep(0.4)
    for _ in range(2):
        with pytest.raises(CatalogueUnavailableError, match="attempts"):
            await for_order(ctx, client, broken)

    assert client.breaker.current_state == "closed"
    assert client.breaker.fail_counter == 2


async def test_an_inventory_that_is_not_there_is_a_failure(ctx: ServiceContext) -> None:
    client = InventoryClient(f"http://127.0.0.1:{free_port()}", ctx.http, FAST)
    with pytest.raises(CatalogueUnavailableError, match="ConnectError"):
        await for_order(ctx, client, uuid4())
    assert client.breaker.fail_counter == 3


async def test_the_service_starts_one_client_on_its_settings(ctx: ServiceContext) -> None:
    client = catalogue.inventory_client(ctx)
    assert client is catalogue.inventory_client(ctx)
    assert client.base_url == ctx.settings.inventory_url == "http://127.0.0.1:8002"
    assert client.http is ctx.http
    assert client.policy == ResiliencePolicy(
        attempts=3,
        attempt_timeout_seconds=2.0,
        first_wait_seconds=1.0,
        max_wait_seconds=4.0,
        breaker_failures=5,
        breaker_window_seconds=60.0,
        breaker_open_seconds=60.0,
    )


async def test_one_failing_product_fails_the_order_and_stores_nothing(
    ctx: ServiceContext, client: InventoryClient, served: Served
) -> None:
    broken, healthy = uuid4(), uuid4()
    served.inventory.answers[broken] = 500
    served.inventory.product(healthy)

    with pytest.raises(CatalogueUnavailableError, match="3 attempts"):
        await for_order(ctx, client, healthy, broken)

    assert (served.inventory.hits[healthy], served.inventory.hits[broken]) == (1, 3)
    assert await stored(ctx, healthy) is None  # the order's transaction was rolled back

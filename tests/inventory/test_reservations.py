"""Inventory reservations at the use-case level against the real PostgreSQL (and once on
SQLite): all-or-nothing, the race for the last unit, confirm / cancel / expire, events in any
order and more than once, and the CHECK constraints that guard the stock invariants.

Events are delivered the way the kit's consumer wrapper does it (inbox row, handler, commit in
one unit of work), each delivery on its own session and connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from generated.events.models import (
    SalesOrderCancelledPayload,
    SalesOrderConfirmedPayload,
    SalesOrderCreatedPayload,
)
from generated.events.publishers import ENVELOPE_MODELS, EVENTS
from generated.inventory import models
from services.inventory import consumers
from services.inventory.commands import catalogue, reservations, stock, warehouses
from services.inventory.service import definition
from services.inventory.tables import (
    Movement,
    Product,
    Reservation,
    ReservationFailure,
    Stock,
)
from services.platform.core.contracts import Topology
from services.platform.core.scope import Caller
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import InProcessBus, InProcessRouter
from services.platform.persistence.db import Database, prepare_database
from services.platform.persistence.redis import Keys, connect_redis
from services.platform.persistence.uow import UnitOfWork
from services.platform.runtime.consumers import DeadLetter
from services.platform.runtime.service import ServiceContext

pytestmark = pytest.mark.integration

ADDRESS = {
    "street": "Rua A",
    "number": "1",
    "complement": None,
    "neighborhood": "Centro",
    "city": "Campinas",
    "state": "SP",
    "zip_code": "13000-000",
    "country": "BR",
}
CUSTOMER = {
    "customer_id": "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e",
    "customer_email": "a@example.com",
}


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]]) -> Settings:
    # A database of its own: these tests count movements and reservations.
    return load_settings("inventory", 8002, scoped_env("reservations"))


async def _context(settings: Settings) -> ServiceContext:
    await prepare_database(definition.migrations, settings.database_url)
    ctx = ServiceContext(
        definition=definition,
        settings=settings,
        database=Database(settings),
        redis=connect_redis(settings),
        keys=Keys(settings.redis_prefix),
        bus=InProcessBus(InProcessRouter(Topology((), ())), service=definition.name),
        http=httpx.AsyncClient(),
    )
    await warehouses.seed_default_warehouse(ctx)
    return ctx


async def _close(ctx: ServiceContext) -> None:
    await ctx.http.aclose()
    await ctx.redis.aclose()
    await ctx.database.dispose()


@pytest.fixture(scope="module")
async def ctx(settings: Settings) -> AsyncIterator[ServiceContext]:
    running = await _context(settings)
    yield running
    await _close(running)


# --- helpers --------------------------------------------------------------------------------


Handler = Callable[[UnitOfWork, Any], Awaitable[None]]


async def deliver(
    ctx: ServiceContext,
    handler: Handler,
    event_name: str,
    payload: BaseModel,
    event_id: UUID | None = None,
) -> list[dict[str, Any]]:
    """One delivery as the kit's consumer wrapper makes it (the whole envelope validated by its
    generated model; inbox row, consumer method and commit in one unit of work); the envelopes
    emitted."""
    event_id = event_id or uuid4()
    event = ENVELOPE_MODELS[event_name].model_validate(
        {
            "event_id": str(event_id),
            "event_name": event_name,
            "event_version": EVENTS[event_name].version,
            "occurred_at": "2026-01-02T03:04:05Z",
            "correlation_id": str(uuid4()),
            "causation_id": None,
            "payload": payload.model_dump(mode="json"),
            "metadata": {"service": "sales", "user_id": None, "trace_id": None},
        }
    )
    async with ctx.unit_of_work() as uow:
        if not await uow.mark_handled(ctx.name, event_id, event_name):
            return []
        await handler(uow, event)
        await uow.commit()
        return list(uow.emitted)


async def deliver_created(
    ctx: ServiceContext, payload: SalesOrderCreatedPayload, event_id: UUID | None = None
) -> list[dict[str, Any]]:
    return await deliver(
        ctx, consumers.on_sales_order_created, "sales.order.created", payload, event_id
    )


def created(order_id: UUID, *lines: tuple[UUID, int]) -> SalesOrderCreatedPayload:
    return SalesOrderCreatedPayload.model_validate(
        {
            "order_id": str(order_id),
            "order_number": "ORD-2025-000001",
            "customer_id": str(uuid4()),
            "customer_email": "buyer@example.com",
            "items": [
                {
                    "product_id": str(product_id),
                    "sku": "SKU-1",
                    "name": "Item",
                    "quantity": quantity,
                    "unit_price": "10.00",
                }
                for product_id, quantity in lines
            ],
            "subtotal": "10.00",
            "discount": "0.00",
            "shipping": "0.00",
            "total": "10.00",
            "currency": "BRL",
            "payment_method": "pix",
            "shipping_address": ADDRESS,
        }
    )


def _lines(*lines: tuple[UUID, int]) -> list[dict[str, Any]]:
    return [{"product_id": str(p), "quantity": q} for p, q in lines] or [
        {"product_id": str(uuid4()), "quantity": 1}
    ]


def confirmed(order_id: UUID, *lines: tuple[UUID, int]) -> SalesOrderConfirmedPayload:
    return SalesOrderConfirmedPayload.model_validate(
        {
            "order_id": str(order_id),
            "order_number": "ORD-2025-000001",
            **CUSTOMER,
            "total": "10.00",
            "currency": "BRL",
            "shipping_address": ADDRESS,
            "items": _lines(*lines),
        }
    )


def cancelled(order_id: UUID, *lines: tuple[UUID, int]) -> SalesOrderCancelledPayload:
    return SalesOrderCancelledPayload.model_validate(
        {
            "order_id": str(order_id),
            "order_number": "ORD-2025-000001",
            **CUSTOMER,
            "reason": "payment declined",
            "items": _lines(*lines),
        }
    )


async def reserve(ctx: ServiceContext, order_id: UUID, *lines: tuple[UUID, int]) -> list[Any]:
    return await deliver(
        ctx, consumers.on_sales_order_created, "sales.order.created", created(order_id, *lines)
    )


async def confirm(ctx: ServiceContext, order_id: UUID) -> list[Any]:
    return await deliver(
        ctx, consumers.on_sales_order_confirmed, "sales.order.confirmed", confirmed(order_id)
    )


async def cancel(ctx: ServiceContext, order_id: UUID) -> list[Any]:
    return await deliver(
        ctx, consumers.on_sales_order_cancelled, "sales.order.cancelled", cancelled(order_id)
    )


def names(emitted: list[dict[str, Any]]) -> list[str]:
    return [envelope["event_name"] for envelope in emitted]


async def new_product(ctx: ServiceContext, on_hand: int = 0, min_quantity: int = 0) -> UUID:
    async with ctx.unit_of_work() as uow:
        product = await catalogue.create_product(
            uow,
            ctx.cache,
            models.ProductCreate(
                sku=f"SKU-{uuid4().hex[:12].upper()}",
                name="Widget",
                description=None,
                price="10.00",
                currency="BRL",
                category_id=None,
                status=models.ProductStatus.active,
            ),
        )
        if on_hand:
            await stock.adjust_stock(
                uow,
                Caller(principal=None, client_ip=None, request_id=None, correlation_id=None),
                models.StockAdjust(
                    product_id=product.id,
                    quantity=on_hand,
                    reason="initial count",
                    reference=None,
                    min_quantity=min_quantity,
                ),
            )
        await uow.commit()
    return product.id


async def level(ctx: ServiceContext, product_id: UUID) -> tuple[int, int]:
    async with ctx.database.session() as session:
        row = (
            await session.execute(
                select(col(Stock.on_hand), col(Stock.reserved)).where(
                    col(Stock.product_id) == product_id
                )
            )
        ).one()
    return int(row[0]), int(row[1])


async def reservation(ctx: ServiceContext, order_id: UUID) -> Reservation | None:
    async with ctx.database.session() as session:
        return (
            await session.scalars(select(Reservation).where(col(Reservation.order_id) == order_id))
        ).first()


async def movement_types(ctx: ServiceContext, reference: UUID) -> list[str]:
    async with ctx.database.session() as session:
        rows = await session.scalars(
            select(col(Movement.type))
            .where(col(Movement.reference) == str(reference))
            .order_by(col(Movement.id))
        )
        return list(rows.all())


# --- all or nothing -------------------------------------------------------------------------


async def test_reserve_takes_every_item(ctx: ServiceContext) -> None:
    a, b = await new_product(ctx, 5), await new_product(ctx, 3)
    order = uuid4()
    emitted = await reserve(ctx, order, (a, 2), (b, 3), (a, 1))
    assert names(emitted) == ["inventory.stock.reserved"]
    payload = emitted[0]["payload"]
    assert payload["order_id"] == str(order)
    assert {(i["product_id"], i["quantity"]) for i in payload["items"]} == {
        (str(a), 3),
        (str(b), 3),
    }
    assert await level(ctx, a) == (5, 3)
    assert await level(ctx, b) == (3, 3)
    found = await reservation(ctx, order)
    assert found is not None
    assert found.status == "pending"
    assert await movement_types(ctx, order) == ["reservation", "reservation"]


async def test_reserve_is_all_or_nothing(ctx: ServiceContext) -> None:
    plenty, scarce, unknown = await new_product(ctx, 10), await new_product(ctx, 1), uuid4()
    order, event_id = uuid4(), uuid4()
    event = created(order, (plenty, 4), (scarce, 2))
    emitted = await deliver_created(ctx, event, event_id)
    assert names(emitted) == ["inventory.stock.reservation_failed"]
    payload = emitted[0]["payload"]
    assert payload["reason"] == "insufficient_stock"
    assert payload["items"] == [{"product_id": str(scarce), "requested": 2, "available": 1}]
    # Nothing was kept of the lines that could have been reserved.
    assert await level(ctx, plenty) == (10, 0)
    assert await level(ctx, scarce) == (1, 0)
    assert await reservation(ctx, order) is None
    assert await movement_types(ctx, order) == []
    async with ctx.database.session() as session:
        failures = await session.scalar(
            select(func.count())
            .select_from(ReservationFailure)
            .where(col(ReservationFailure.order_id) == order)
        )
    assert failures == 1
    # The failure was recorded in the transaction of the inbox row: the same event again is a
    # duplicate, and changes nothing.
    assert await deliver_created(ctx, event, event_id) == []

    other = uuid4()
    emitted = await reserve(ctx, other, (plenty, 1), (unknown, 2))
    payload = emitted[0]["payload"]
    assert payload["reason"] == "product_not_found"
    assert payload["items"] == [{"product_id": str(unknown), "requested": 2, "available": 0}]
    assert await level(ctx, plenty) == (10, 0)


async def test_two_orders_racing_for_the_last_unit(ctx: ServiceContext) -> None:
    for _ in range(8):
        product = await new_product(ctx, 1)
        first, second = uuid4(), uuid4()
        results = await asyncio.gather(
            reserve(ctx, first, (product, 1)), reserve(ctx, second, (product, 1))
        )
        outcomes = sorted(names(emitted)[0] for emitted in results)
        assert outcomes == ["inventory.stock.reservation_failed", "inventory.stock.reserved"]
        assert await level(ctx, product) == (1, 1)
        reservations = [await reservation(ctx, first), await reservation(ctx, second)]
        assert sum(r is not None for r in reservations) == 1


async def test_many_orders_never_oversell(ctx: ServiceContext) -> None:
    a, b = await new_product(ctx, 5), await new_product(ctx, 5)
    # Lines in both orders of products: sorted locking keeps this free of deadlocks.
    orders = [uuid4() for _ in range(12)]
    results = await asyncio.gather(
        *(
            reserve(ctx, order, *(((a, 1), (b, 1)) if i % 2 else ((b, 1), (a, 1))))
            for i, order in enumerate(orders)
        )
    )
    won = [r for r in results if names(r) == ["inventory.stock.reserved"]]
    assert len(won) == 5
    assert await level(ctx, a) == (5, 5)
    assert await level(ctx, b) == (5, 5)


# --- confirm, cancel, expire ----------------------------------------------------------------


async def test_confirm_turns_the_reservation_into_an_exit(ctx: ServiceContext) -> None:
    product = await new_product(ctx, 12, min_quantity=10)
    order = uuid4()
    await reserve(ctx, order, (product, 3))
    emitted = await confirm(ctx, order)
    assert names(emitted) == ["inventory.stock.confirmed", "inventory.stock.low_alert"]
    assert emitted[1]["payload"]["available"] == 9
    assert emitted[1]["payload"]["min_quantity"] == 10
    assert await level(ctx, product) == (9, 0)
    found = await reservation(ctx, order)
    assert found is not None
    assert found.status == "confirmed"
    assert await movement_types(ctx, order) == ["reservation", "confirmation"]
    # A second confirmation (another copy of the event) changes nothing.
    assert await confirm(ctx, order) == []
    assert await level(ctx, product) == (9, 0)


async def test_cancel_releases_the_reservation(ctx: ServiceContext) -> None:
    product = await new_product(ctx, 4)
    order = uuid4()
    await reserve(ctx, order, (product, 4))
    emitted = await cancel(ctx, order)
    assert names(emitted) == ["inventory.stock.released"]
    assert emitted[0]["payload"]["reason"] == "cancelled"
    assert emitted[0]["payload"]["items"][0]["quantity"] == 4
    assert await level(ctx, product) == (4, 0)
    assert await movement_types(ctx, order) == ["reservation", "release"]
    assert await cancel(ctx, order) == []  # already released: nothing to do


async def test_expired_reservations_are_released(ctx: ServiceContext) -> None:
    product = await new_product(ctx, 2)
    order, fresh = uuid4(), uuid4()
    await reserve(ctx, order, (product, 1))
    await reserve(ctx, fresh, (product, 1))
    async with ctx.database.session() as session:
        await session.execute(
            update(Reservation)
            .where(col(Reservation.order_id) == order)
            .values(expires_at=func.now() - text("interval '16 minutes'"))
        )
        await session.commit()
    assert await reservations.expire_reservations(ctx) >= 1
    expired = await reservation(ctx, order)
    assert expired is not None
    assert (expired.status, expired.reason) == ("released", "expired")
    still = await reservation(ctx, fresh)
    assert still is not None
    assert still.status == "pending"
    assert await level(ctx, product) == (2, 1)
    # The order confirmed after its reservation expired: an illegal transition.
    with pytest.raises(DeadLetter, match="illegal transition"):
        await confirm(ctx, order)


# --- any order, more than once --------------------------------------------------------------


async def test_cancelled_before_created_reserves_nothing(ctx: ServiceContext) -> None:
    product = await new_product(ctx, 3)
    order = uuid4()
    emitted = await cancel(ctx, order)
    assert names(emitted) == ["inventory.stock.released"]
    assert emitted[0]["payload"]["reservation_id"] is None
    assert emitted[0]["payload"]["items"] == []
    assert await reserve(ctx, order, (product, 1)) == []
    assert await level(ctx, product) == (3, 0)
    tombstone = await reservation(ctx, order)
    assert tombstone is not None
    assert (tombstone.status, tombstone.reason) == ("released", "cancelled")


async def test_duplicate_created_reserves_once(ctx: ServiceContext) -> None:
    product = await new_product(ctx, 5)
    order, event_id = uuid4(), uuid4()
    payload = created(order, (product, 2))
    first = await deliver_created(ctx, payload, event_id)
    assert names(first) == ["inventory.stock.reserved"]
    # The same event again (inbox) and a re-publication with a new id (unique order_id).
    assert await deliver_created(ctx, payload, event_id) == []
    assert await deliver_created(ctx, payload) == []
    assert await level(ctx, product) == (5, 2)


async def test_concurrent_copies_of_created_reserve_once(ctx: ServiceContext) -> None:
    product = await new_product(ctx, 5)
    order = uuid4()
    payload = created(order, (product, 2))
    results = await asyncio.gather(
        *(deliver_created(ctx, payload) for _ in range(3)),
        return_exceptions=True,
    )
    # The losers hit the unique order_id; the kit would retry them and they would skip.
    assert (
        sum(isinstance(r, list) and names(r) == ["inventory.stock.reserved"] for r in results) == 1
    )
    assert all(isinstance(r, (list, IntegrityError)) for r in results)
    assert await level(ctx, product) == (5, 2)
    assert await reserve(ctx, order, (product, 2)) == []


async def test_confirmed_for_an_unknown_order_is_dead_lettered(ctx: ServiceContext) -> None:
    with pytest.raises(DeadLetter, match="no reservation"):
        await confirm(ctx, uuid4())


async def test_illegal_transitions_are_dead_lettered(ctx: ServiceContext) -> None:
    product = await new_product(ctx, 2)
    released = uuid4()
    await reserve(ctx, released, (product, 1))
    await cancel(ctx, released)
    with pytest.raises(DeadLetter, match="illegal transition"):
        await confirm(ctx, released)


async def test_an_order_cancelled_after_confirmation_gets_its_stock_back_once(
    ctx: ServiceContext,
) -> None:
    product = await new_product(ctx, 2)
    order = uuid4()
    await reserve(ctx, order, (product, 1))
    await confirm(ctx, order)
    assert await level(ctx, product) == (1, 0)  # the unit left
    await cancel(ctx, order)
    assert await level(ctx, product) == (2, 0)  # and came back
    await cancel(ctx, order)  # a redelivery under another id returns nothing more
    assert await level(ctx, product) == (2, 0)
    returned = await reservation(ctx, order)
    assert returned is not None
    assert (returned.status, returned.reason) == ("confirmed", "cancelled")
    async with ctx.database.session() as session:
        kinds = (
            await session.scalars(
                select(col(Movement.type))
                .where(col(Movement.reference) == str(order))
                .order_by(col(Movement.id))
            )
        ).all()
    assert kinds == ["reservation", "confirmation", "in"]


# --- the database guards the invariants -----------------------------------------------------


@pytest.mark.parametrize(
    "assignment",
    ["on_hand = -1", "reserved = -1", "reserved = on_hand + 1", "min_quantity = -1"],
)
async def test_check_constraints_reject_bad_stock(ctx: ServiceContext, assignment: str) -> None:
    product = await new_product(ctx, 3)
    async with ctx.database.session() as session:
        with pytest.raises(IntegrityError):
            await session.execute(
                text(f"UPDATE stock SET {assignment} WHERE product_id = :p"),
                {"p": product},
            )
    with pytest.raises(IntegrityError):
        async with ctx.database.session() as session:
            await session.execute(
                text("UPDATE products SET price = 0 WHERE id = :p"), {"p": product}
            )
    assert await level(ctx, product) == (3, 0)


# --- embedded mode --------------------------------------------------------------------------


async def test_the_saga_on_sqlite(settings: Settings, tmp_path: Path) -> None:
    lite_settings = replace(
        settings, database_url=f"sqlite+aiosqlite:///{tmp_path / 'inventory.db'}", redis_url=None
    )
    lite = await _context(lite_settings)
    try:
        product = await new_product(lite, 2)
        first, second, third = uuid4(), uuid4(), uuid4()
        assert names(await reserve(lite, first, (product, 2))) == ["inventory.stock.reserved"]
        assert names(await reserve(lite, second, (product, 1))) == [
            "inventory.stock.reservation_failed"
        ]
        assert await level(lite, product) == (2, 2)
        assert names(await confirm(lite, first))[0] == "inventory.stock.confirmed"
        assert await level(lite, product) == (0, 0)
        assert names(await cancel(lite, third)) == ["inventory.stock.released"]
        assert await reserve(lite, third, (product, 1)) == []
        async with lite.database.session() as session:
            with pytest.raises(IntegrityError):
                await session.execute(
                    text("UPDATE stock SET reserved = on_hand + 1 WHERE product_id = :p"),
                    {"p": product.hex},
                )
        async with lite.database.session() as session:
            assert (await session.scalar(select(func.count()).select_from(Product))) == 1
    finally:
        await _close(lite)

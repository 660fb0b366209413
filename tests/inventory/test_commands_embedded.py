"""Inventory's commands through the embedded harness: the service runs in process as `erp up`
runs it without servers (SQLite in tmp_path, the in-process broker, fakeredis), so a command,
a consumer or a route is checked in well under a second — its rows, movements and outbox."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from sqlmodel import col, select

from generated.inventory import models
from services.inventory.commands import catalogue, stock
from services.inventory.service import definition
from services.inventory.tables import Movement, Product, ReservationFailure
from services.platform.core.problems import Problem
from services.platform.core.scope import Caller
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.service import ServiceContext
from tests.support.embedded import StartEmbedded
from tests.support.events import assert_conforms
from tests.support.orders import order_created
from tests.support.polling import eventually
from tests.support.problems import problem

ANYONE = Caller(principal=None, client_ip=None, request_id=None, correlation_id=None)


@pytest.fixture
async def ctx(embedded: StartEmbedded) -> ServiceContext:
    """Inventory, running embedded until the test ends."""
    return (await embedded(definition)).ctx


async def new_product(ctx: ServiceContext, sku: str) -> models.Product:
    body = models.ProductCreate(sku=sku, name="Widget", price="10.00")
    async with ctx.unit_of_work() as uow:
        product = await catalogue.create_product(uow, ctx.cache, body)
        await uow.commit()
    return product


async def outbox(ctx: ServiceContext, event_name: str) -> list[dict[str, Any]]:
    """The envelopes of `event_name` in the outbox, oldest first, checked against AsyncAPI."""
    async with ctx.database.session() as session:
        bodies = await session.scalars(
            select(col(OutboxMessage.body))
            .where(col(OutboxMessage.event_name) == event_name)
            .order_by(col(OutboxMessage.id))
        )
        return [assert_conforms(body.encode()) for body in bodies]


async def movements(ctx: ServiceContext, product_id: UUID) -> list[tuple[str, int, int]]:
    async with ctx.database.session() as session:
        rows = await session.scalars(
            select(Movement)
            .where(col(Movement.product_id) == product_id)
            .order_by(col(Movement.id))
        )
        return [(m.type, m.quantity, m.on_hand_after) for m in rows]


async def test_receive_then_adjust_writes_the_movements_and_a_low_stock_alert(
    ctx: ServiceContext,
) -> None:
    product = await new_product(ctx, "EMB-1")
    receipt = models.StockReceive(product_id=product.id, quantity=30, reason="purchase 1")
    count = models.StockAdjust(
        product_id=product.id, quantity=-25, reason="cycle count", min_quantity=6
    )
    async with ctx.unit_of_work() as uow:
        await stock.receive_stock(uow, ANYONE, receipt)
        await stock.adjust_stock(uow, ANYONE, count)
        await uow.commit()

    assert await movements(ctx, product.id) == [("in", 30, 30), ("adjustment", -25, 5)]
    [created] = await outbox(ctx, "inventory.product.created")
    assert created["payload"]["sku"] == "EMB-1"
    [alert] = await outbox(ctx, "inventory.stock.low_alert")
    assert alert["payload"]["product_id"] == str(product.id)
    assert (alert["payload"]["available"], alert["payload"]["min_quantity"]) == (5, 6)


async def test_a_command_that_breaks_a_rule_writes_nothing(ctx: ServiceContext) -> None:
    product = await new_product(ctx, "EMB-2")
    count = models.StockAdjust(product_id=product.id, quantity=-1, reason="cycle count")
    async with ctx.unit_of_work() as uow:
        with pytest.raises(Problem) as refused:
            await stock.adjust_stock(uow, ANYONE, count)
    assert refused.value.status == 422
    assert await movements(ctx, product.id) == []


async def test_an_order_that_cannot_be_reserved_records_the_failure_and_says_so(
    ctx: ServiceContext,
) -> None:
    product = await new_product(ctx, "EMB-3")
    order = order_created([(product, 2)])  # nothing in stock
    await ctx.bus.publish(
        "sales.events",
        "sales.order.created",
        json.dumps(order).encode(),
        message_id=order["event_id"],
    )

    [failed] = await eventually(
        lambda: outbox(ctx, "inventory.stock.reservation_failed"), what="reservation_failed"
    )
    assert failed["causation_id"] == order["event_id"]
    assert failed["payload"]["reason"] == "insufficient_stock"
    assert failed["payload"]["items"] == [
        {"product_id": str(product.id), "requested": 2, "available": 0}
    ]
    async with ctx.database.session() as session:
        [recorded] = await session.scalars(select(ReservationFailure))
    assert str(recorded.order_id) == order["payload"]["order_id"]


async def test_the_api_serves_what_the_commands_wrote(embedded: StartEmbedded) -> None:
    service = await embedded(definition, http=True)
    ctx = service.ctx
    product = await new_product(ctx, "EMB-4")

    listed = await service.http.get("/api/v1/products", params={"search": "Widget"})
    assert listed.status_code == 200, listed.text
    assert [p["sku"] for p in listed.json()["data"]] == ["EMB-4"]
    body = {"sku": "EMB-5", "name": "x", "price": "1.00"}
    problem(await service.http.post("/api/v1/products", json=body), 401)
    async with ctx.database.session() as session:
        assert [p.sku for p in await session.scalars(select(Product))] == [product.sku]

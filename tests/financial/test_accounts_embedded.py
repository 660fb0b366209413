"""Accounts payable and receivable through the embedded harness (SQLite, as `erp up` runs
without servers): the overdue job, and an order's receivable following its payment — received
with the charge after the commit, cancelled by the refund or by a cancellation that came
before the order — on the other dialect (ADR 0013)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from sqlmodel import col, select

from generated.events.models import SalesOrderCancelledEvent, SalesOrderCreatedEvent
from generated.financial import models
from services.financial.commands import accounts, payments, suppliers
from services.financial.gateway import SimulatedGateway
from services.financial.service import definition
from services.financial.tables import AccountPayable, AccountReceivable
from services.platform import utc_now
from services.platform.runtime.service import ServiceContext
from tests.support.embedded import StartEmbedded
from tests.support.http import unique_cnpj
from tests.support.orders import order_cancelled, order_totalling


@pytest.fixture
async def ctx(embedded: StartEmbedded) -> ServiceContext:
    return (await embedded(definition)).ctx


async def test_the_overdue_job_on_sqlite(ctx: ServiceContext) -> None:
    today = utc_now().date()
    async with ctx.unit_of_work() as uow:
        supplier = await suppliers.create_supplier(
            uow, models.SupplierCreate(name="Papelaria", cnpj=unique_cnpj())
        )
        body = models.PayableCreate(
            supplier_id=supplier.id,
            description="Paper",
            amount="12.00",
            issue_date=today,
            payment_terms_days=0,
        )
        payable = await accounts.create_payable(uow, body)
        await uow.commit()
    tomorrow = today + timedelta(days=1)
    assert await accounts.mark_overdue(ctx, today=tomorrow) == accounts.Overdue(1, 0)
    assert await accounts.mark_overdue(ctx, today=tomorrow) == accounts.Overdue(0, 0)
    async with ctx.database.session() as session:
        row = await session.get(AccountPayable, payable.id)
    assert row is not None
    assert (row.status, row.version) == ("overdue", 2)


async def order_receivables(ctx: ServiceContext, order_id: str) -> list[tuple[str, str | None]]:
    async with ctx.database.session() as session:
        rows = await session.scalars(
            select(AccountReceivable).where(col(AccountReceivable.order_id) == UUID(order_id))
        )
        return [(row.status, row.cancellation_reason) for row in rows]


async def deliver(ctx: ServiceContext, gateway: SimulatedGateway, envelope: dict[str, Any]) -> None:
    """A consumer's transaction, and what runs after its commit (the charge, the refund)."""
    charger = payments.Charger(ctx, gateway)
    async with ctx.unit_of_work() as uow:
        if envelope["event_name"] == "sales.order.created":
            await payments.receive_order(
                uow, SalesOrderCreatedEvent.model_validate(envelope), charger
            )
        else:
            event = SalesOrderCancelledEvent.model_validate(envelope)
            await payments.cancel_order(uow, event, charger)
        await uow.commit()


async def test_an_orders_receivable_is_received_with_its_payment_and_cancelled_by_the_refund(
    ctx: ServiceContext,
) -> None:
    created = order_totalling("35.00")
    order_id = created["payload"]["order_id"]
    gateway = SimulatedGateway()
    await deliver(ctx, gateway, created)
    assert await order_receivables(ctx, order_id) == [("received", None)]
    await deliver(ctx, gateway, order_cancelled(created))
    assert await order_receivables(ctx, order_id) == [("cancelled", "The payment was refunded.")]


async def test_an_order_cancelled_before_it_arrived_leaves_its_receivable_cancelled(
    ctx: ServiceContext,
) -> None:
    created = order_totalling("20.00")
    gateway = SimulatedGateway()
    await deliver(ctx, gateway, order_cancelled(created))
    await deliver(ctx, gateway, created)
    assert await order_receivables(ctx, created["payload"]["order_id"]) == [
        ("cancelled", "The payment was cancelled.")
    ]
    assert gateway.charge_calls == 0

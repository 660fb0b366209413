"""Financial's part after the dispatch, on PostgreSQL, through the kit's own consumer of
`financial.queue` (envelope checks, inbox, unit of work, retries, dead letters): a dispatched
order is invoiced and its invoice issued once, however often logistics says so; a cancelled
order is not (or its invoice is cancelled and the money refunded when the cancellation comes
after); a dispatch of an order financial never saw is retried and then dead-lettered. The
payment events carry the customer's address for notification (ADR 0022)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from sqlmodel import col, select

from generated.topology import TOPOLOGY
from services.financial.issuer import load_into
from services.financial.service import definition
from services.financial.tables import Invoice, Payment
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import (
    InProcessRouter,
)
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.service import ServiceContext
from tests.support.consuming import Deliver, consumer_of, consuming_context
from tests.support.events import assert_conforms, envelope
from tests.support.orders import order_cancelled, order_totalling

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]]) -> Settings:
    return load_settings(
        "financial", 8005, {**scoped_env("financial_dispatch"), "ERP_RETRY_DELAYS": "0.01"}
    )


@pytest.fixture(scope="module")
def router() -> InProcessRouter:
    return InProcessRouter(TOPOLOGY)


@pytest.fixture(scope="module")
async def ctx(settings: Settings, router: InProcessRouter) -> AsyncIterator[ServiceContext]:
    # The issuer, as the service's start-up loads it.
    async with consuming_context(definition, settings, router, load_into) as running:
        yield running


@pytest.fixture(scope="module")
def deliver(ctx: ServiceContext, router: InProcessRouter) -> Deliver:
    return consumer_of(ctx, router)


def dispatched(created: dict[str, Any], shipment_id: str | None = None) -> dict[str, Any]:
    """logistics' `logistics.shipment.dispatched` of the order `created` announced, in its
    conversation."""
    payload = created["payload"]
    return envelope(
        "logistics.shipment.dispatched",
        {
            "shipment_id": shipment_id or str(uuid.uuid4()),
            "order_id": payload["order_id"],
            "order_number": payload["order_number"],
            "customer_email": payload["customer_email"],
            "tracking_code": "BR7K3M9Q2X4ZP",
            "carrier_code": "CORREIOS",
            "service_type": "standard",
            "estimated_delivery_date": None,
            "dispatched_at": "2026-01-02T09:00:00Z",
        },
        correlation_id=created["correlation_id"],
    )


async def paid(deliver: Callable[[dict[str, Any]], Any], total: str = "150.00") -> dict[str, Any]:
    """An order financial received and charged (the charge runs after the consumer's commit)."""
    created = order_totalling(total)
    assert (await deliver(created)).dead_letter_reason is None
    return created


async def outbox(ctx: ServiceContext, order_id: str, prefix: str) -> list[dict[str, Any]]:
    """The order's outbox envelopes whose name starts with `prefix`, checked against the
    AsyncAPI document."""
    async with ctx.database.session() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(col(OutboxMessage.event_name).startswith(prefix))
            .order_by(col(OutboxMessage.id))
        )
        bodies = [row.body for row in rows]
    found = [assert_conforms(body.encode()) for body in bodies]
    return [body for body in found if body["payload"]["order_id"] == order_id]


async def invoices_of(ctx: ServiceContext, order_id: str) -> list[Invoice]:
    async with ctx.database.session() as session:
        rows = await session.scalars(
            select(Invoice).where(col(Invoice.order_id) == uuid.UUID(order_id))
        )
        return list(rows)


async def payment_status(ctx: ServiceContext, order_id: str) -> str:
    async with ctx.database.session() as session:
        payment = (
            await session.scalars(
                select(Payment).where(col(Payment.order_id) == uuid.UUID(order_id))
            )
        ).one()
        return payment.status


async def test_a_dispatched_order_is_invoiced_and_issued_once(
    ctx: ServiceContext, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    created = await paid(deliver)
    order_id = created["payload"]["order_id"]
    assert await payment_status(ctx, order_id) == "approved"
    first = dispatched(created)
    repeated = dispatched(created, first["payload"]["shipment_id"])  # a new event id
    retried = dispatched(created)  # a retried shipment's dispatch
    for body in (first, first, repeated, retried):
        assert (await deliver(body)).dead_letter_reason is None

    [invoice] = await invoices_of(ctx, order_id)
    assert (invoice.status, invoice.issued_at is not None) == ("issued", True)
    [generated] = await outbox(ctx, order_id, "financial.invoice.")
    assert generated["event_name"] == "financial.invoice.generated"
    assert generated["payload"]["invoice_id"] == str(invoice.id)
    # In the order's conversation, caused by the dispatch that made it.
    assert generated["correlation_id"] == created["correlation_id"]
    assert generated["causation_id"] == first["event_id"]


async def test_an_order_cancelled_before_its_dispatch_is_not_invoiced(
    ctx: ServiceContext, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    created = await paid(deliver)
    order_id = created["payload"]["order_id"]
    assert (await deliver(order_cancelled(created))).dead_letter_reason is None
    assert (await deliver(dispatched(created))).dead_letter_reason is None
    assert await invoices_of(ctx, order_id) == []
    assert await payment_status(ctx, order_id) == "refunded"
    assert await outbox(ctx, order_id, "financial.invoice.") == []


async def test_an_order_cancelled_after_its_dispatch_refunds_and_cancels_the_invoice(
    ctx: ServiceContext, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    """The shipment failed and staff cancelled the shipped order (or the cancellation raced the
    dispatch and lost): the money is refunded, and no invoice stays live."""
    created = await paid(deliver)
    order_id = created["payload"]["order_id"]
    assert (await deliver(dispatched(created))).dead_letter_reason is None
    cancellation = order_cancelled(created, "Undeliverable")
    assert (await deliver(cancellation)).dead_letter_reason is None

    [invoice] = await invoices_of(ctx, order_id)
    assert (invoice.status, invoice.reason) == ("cancelled", "Undeliverable")
    assert await payment_status(ctx, order_id) == "refunded"
    names = [body["event_name"] for body in await outbox(ctx, order_id, "financial.")]
    assert names == [
        "financial.payment.requested",
        "financial.payment.processed",
        "financial.invoice.generated",
        "financial.invoice.cancelled",
        "financial.payment.refunded",
    ]
    # A dispatch redelivered after all that makes no second invoice.
    assert (await deliver(dispatched(created))).dead_letter_reason is None
    assert len(await invoices_of(ctx, order_id)) == 1


async def test_a_declined_order_is_not_invoiced(
    ctx: ServiceContext, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    created = await paid(deliver, total="150.51")  # the simulator declines .51
    order_id = created["payload"]["order_id"]
    assert await payment_status(ctx, order_id) == "declined"
    assert (await deliver(dispatched(created))).dead_letter_reason is None
    assert await invoices_of(ctx, order_id) == []


async def test_a_dispatch_of_an_order_financial_never_saw_is_retried_then_dead_lettered(
    ctx: ServiceContext, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    stranger = order_totalling("150.00")  # never delivered
    delivery = await deliver(dispatched(stranger))
    order_id = stranger["payload"]["order_id"]
    assert delivery.dead_letter_reason == (
        f"order {order_id} has no payment: financial never saw it"
    )
    assert delivery.attempts == len(ctx.settings.retry_delays) + 1
    assert await invoices_of(ctx, order_id) == []


async def test_the_payment_events_carry_the_customers_address(
    ctx: ServiceContext, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    approved = await paid(deliver)
    declined = await paid(deliver, total="150.51")
    for created, name in (
        (approved, "financial.payment.processed"),
        (declined, "financial.payment.failed"),
    ):
        payload = created["payload"]
        [event] = [
            body
            for body in await outbox(ctx, payload["order_id"], "financial.payment.")
            if body["event_name"] == name
        ]
        assert event["payload"]["customer_email"] == payload["customer_email"]
        async with ctx.database.session() as session:
            payment = (
                await session.scalars(
                    select(Payment).where(col(Payment.order_id) == uuid.UUID(payload["order_id"]))
                )
            ).one()
        assert payment.customer_email == payload["customer_email"]

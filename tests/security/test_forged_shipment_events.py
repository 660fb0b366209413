"""Forged shipment events against sales and financial on the real RabbitMQ: the consumers that
ship and complete orders (sales) and invoice them (financial) trust nothing on the wire.

Both run in process on this run's servers (as `erp serve` starts them, without HTTP). Each
probe publishes, to `logistics.events`, a `logistics.shipment.*` message a careless consumer
would apply — one from a service that does not produce it, one whose payload breaks the
schema, a body whose `event_name` disagrees with its routing key, one about an order nobody
placed — and asserts the refusal: the message is in `sales.dlq` (and, for a dispatch,
`financial.dlq`) with a reason naming the check, and nothing changed: the order is still
confirmed with no shipment, its approved payment got no invoice, neither inbox holds the
event. The control shows the same dispatch, unforged, ships and invoices the order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from sqlalchemy import text, update
from sqlmodel import col, select

from generated.sales import models
from services.financial.service import definition as financial_definition
from services.financial.tables import Invoice, Payment
from services.platform.core.scope import Caller, Principal
from services.platform.core.settings import load_settings
from services.platform.runtime.runner import run_service
from services.platform.runtime.service import ServiceContext
from services.sales.catalogue import ProductSnapshot
from services.sales.commands import customers, orders
from services.sales.service import definition as sales_definition
from services.sales.tables import Order
from tests.support.events import envelope
from tests.support.polling import eventually
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

# Long enough to tell "dead-lettered at once" from "dead-lettered after the retries".
RETRY_DELAYS = (1.0, 1.5, 2.0)
LOGISTICS_EXCHANGE = "logistics.events"
SALES_DLQ = "sales.dlq"
FINANCIAL_DLQ = "financial.dlq"
STAFF = Caller(
    principal=Principal(str(uuid.uuid4()), "user", frozenset({"sales.orders.create"})),
    client_ip=None,
    request_id=None,
    correlation_id=None,
)
PRODUCT = ProductSnapshot(
    product_id=uuid.uuid4(),
    sku="KB-PROBE-001",
    name="Probe keyboard",
    price=Decimal("100.00"),
    currency="BRL",
    status="active",
    version=1,
)


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return {
        **scoped_env("forged_shipment_events"),
        "ERP_RETRY_DELAYS": ",".join(str(delay) for delay in RETRY_DELAYS),
    }


@pytest.fixture(scope="module")
async def sales(module_env: Mapping[str, str]) -> AsyncIterator[ServiceContext]:
    async with run_service(sales_definition, load_settings("sales", 8003, module_env)) as ctx:
        yield ctx


@pytest.fixture(scope="module")
async def financial(module_env: Mapping[str, str]) -> AsyncIterator[ServiceContext]:
    settings = load_settings("financial", 8005, module_env)
    async with run_service(financial_definition, settings) as ctx:
        yield ctx


@pytest.fixture(scope="module")
async def channel(
    sales: ServiceContext, financial: ServiceContext, module_env: Mapping[str, str]
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect_robust(module_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def customer_id(sales: ServiceContext) -> uuid.UUID:
    body = models.CustomerCreate(
        name="Probe Customer",
        email=f"probe-{uuid.uuid4().hex[:8]}@example.com",
        document="39053344705",
        addresses=[
            models.AddressCreate(
                street="Rua A",
                number="1",
                neighborhood="Centro",
                city="Campinas",
                state="SP",
                zip_code="13010-000",
            )
        ],
    )
    async with sales.unit_of_work() as uow:
        created = await customers.create_customer(uow, body)
        await uow.commit()
    return created.id


@dataclass(frozen=True)
class Target:
    order_id: str
    order_number: str
    customer_email: str


async def confirmed_order(
    sales: ServiceContext, financial: ServiceContext, customer_id: uuid.UUID
) -> Target:
    """A confirmed order (its stock answer set in place: no inventory runs here)."""

    async def lookup(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ProductSnapshot]:
        return {PRODUCT.product_id: PRODUCT}

    body = models.OrderCreate.model_validate(
        {
            "customer_id": str(customer_id),
            "items": [{"product_id": str(PRODUCT.product_id), "quantity": 1}],
            "payment_method": "pix",
        }
    )
    async with sales.unit_of_work() as uow:
        placed = await orders.place_order(uow, STAFF, body, lookup)
        await uow.session.execute(
            update(Order)
            .where(col(Order.id) == placed.id)
            .values(status="confirmed", stock_status="reserved", payment_status="approved")
        )
        await uow.commit()
    # Its sales.order.created reaches financial, which charges it (the simulated gateway
    # approves): a genuine dispatch would invoice it from then on.
    await eventually(
        lambda: payment_approved(financial, placed.id), what="the order's approved payment"
    )
    return Target(str(placed.id), placed.order_number, placed.customer_email)


async def payment_approved(financial: ServiceContext, order_id: uuid.UUID) -> bool:
    async with financial.database.session() as session:
        payment = (
            await session.scalars(select(Payment).where(col(Payment.order_id) == order_id))
        ).first()
        return payment is not None and payment.status == "approved"


def dispatched(target: Target) -> dict[str, Any]:
    return envelope(
        "logistics.shipment.dispatched",
        {
            "shipment_id": str(uuid.uuid4()),
            "order_id": target.order_id,
            "order_number": target.order_number,
            "customer_email": target.customer_email,
            "tracking_code": "BR7K3M9Q2X4ZP",
            "carrier_code": "CORREIOS",
            "service_type": "standard",
            "estimated_delivery_date": None,
            "dispatched_at": "2026-01-02T09:00:00Z",
        },
    )


def delivered(target: Target) -> dict[str, Any]:
    return envelope(
        "logistics.shipment.delivered",
        {
            "shipment_id": str(uuid.uuid4()),
            "order_id": target.order_id,
            "order_number": target.order_number,
            "customer_email": target.customer_email,
            "tracking_code": "BR7K3M9Q2X4ZP",
            "received_by": "Maria Souza",
            "delivered_at": "2026-01-04T15:30:00Z",
        },
    )


async def publish_raw(
    channel: aio_pika.abc.AbstractChannel, forged: dict[str, Any], routing_key: str
) -> None:
    """As a producer would, but with whatever body and routing key the forger chose."""
    body = json.dumps(forged).encode()
    await publish_body(
        channel, LOGISTICS_EXCHANGE, routing_key, body, message_id=forged["event_id"]
    )


async def in_inbox(ctx: ServiceContext, event_id: str) -> bool:
    async with ctx.database.session() as session:
        found = await session.execute(
            text("SELECT 1 FROM inbox WHERE event_id = :id"), {"id": uuid.UUID(event_id)}
        )
        return found.first() is not None


async def order_state(sales: ServiceContext, order_id: str) -> tuple[str, uuid.UUID | None]:
    async with sales.database.session() as session:
        order = await session.get(Order, uuid.UUID(order_id))
        assert order is not None
        return order.status, order.shipment_id


async def invoices_of(financial: ServiceContext, order_id: str) -> int:
    async with financial.database.session() as session:
        rows = await session.scalars(
            select(Invoice.id).where(col(Invoice.order_id) == uuid.UUID(order_id))
        )
        return len(rows.all())


@dataclass(frozen=True)
class Refusal:
    reason: str
    error: str = "InvalidMessage"
    attempts: int = 0


async def assert_refused(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    forged: dict[str, Any],
    routing_key: str,
    refusal: Refusal,
) -> None:
    letter = await take_dead_letter(channel, queue, forged["event_id"])
    assert letter.header("x-erp-error") == refusal.error
    assert letter.header("x-erp-error-reason") == refusal.reason
    assert letter.header("x-erp-attempts") == refusal.attempts
    if refusal.attempts <= 1:
        assert letter.arrived_after < RETRY_DELAYS[0] + RETRY_DELAYS[1], letter.arrived_after
    assert letter.header("x-erp-original-routing-key") == routing_key
    assert json.loads(letter.body) == forged  # kept as it came, for a human to look at


async def assert_untouched(
    sales: ServiceContext, financial: ServiceContext, target: Target, event_id: str
) -> None:
    assert await order_state(sales, target.order_id) == ("confirmed", None)
    assert await invoices_of(financial, target.order_id) == 0
    assert not await in_inbox(sales, event_id)
    assert not await in_inbox(financial, event_id)


async def test_the_control_a_real_dispatch_ships_and_invoices_the_order(
    sales: ServiceContext,
    financial: ServiceContext,
    channel: aio_pika.abc.AbstractChannel,
    customer_id: uuid.UUID,
) -> None:
    """The probes below can fail: the same dispatch, unforged, is applied by both."""
    target = await confirmed_order(sales, financial, customer_id)
    genuine = dispatched(target)
    await publish_raw(channel, genuine, "logistics.shipment.dispatched")
    await eventually(lambda: invoices_of(financial, target.order_id), what="the invoice")
    status, shipment = await order_state(sales, target.order_id)
    assert (status, str(shipment)) == ("shipped", genuine["payload"]["shipment_id"])


@pytest.mark.parametrize("producer", ["sales", "financial", "notification"])
async def test_a_dispatch_not_from_logistics_changes_nothing(
    sales: ServiceContext,
    financial: ServiceContext,
    channel: aio_pika.abc.AbstractChannel,
    customer_id: uuid.UUID,
    producer: str,
) -> None:
    target = await confirmed_order(sales, financial, customer_id)
    forged = dispatched(target)
    forged["metadata"]["service"] = producer
    await publish_raw(channel, forged, "logistics.shipment.dispatched")
    refusal = Refusal(
        f"producer: logistics.shipment.dispatched is published by logistics, not by "
        f"'{producer}' (metadata.service)"
    )
    for queue in (SALES_DLQ, FINANCIAL_DLQ):
        await assert_refused(channel, queue, forged, "logistics.shipment.dispatched", refusal)
    await assert_untouched(sales, financial, target, forged["event_id"])


async def test_a_delivery_not_from_logistics_completes_nothing(
    sales: ServiceContext,
    financial: ServiceContext,
    channel: aio_pika.abc.AbstractChannel,
    customer_id: uuid.UUID,
) -> None:
    target = await confirmed_order(sales, financial, customer_id)
    forged = delivered(target)
    forged["metadata"]["service"] = "sales"
    await publish_raw(channel, forged, "logistics.shipment.delivered")
    refusal = Refusal(
        "producer: logistics.shipment.delivered is published by logistics, not by 'sales' "
        "(metadata.service)"
    )
    await assert_refused(channel, SALES_DLQ, forged, "logistics.shipment.delivered", refusal)
    await assert_untouched(sales, financial, target, forged["event_id"])


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (
            "tracking_code",
            "<script>",
            "schema: payload.tracking_code: '<script>' does not match '^[A-Z0-9]{8,40}$'",
        ),
        ("carrier_code", 7, "schema: payload.carrier_code: 7 is not of type 'string'"),
        (
            "dispatched_at",
            "yesterday",
            "schema: payload.dispatched_at: 'yesterday' is not a 'date-time'",
        ),
        ("order_id", "1 OR 1=1", "schema: payload.order_id: '1 OR 1=1' is not a 'uuid'"),
    ],
)
async def test_a_dispatch_breaking_the_schema_changes_nothing(
    sales: ServiceContext,
    financial: ServiceContext,
    channel: aio_pika.abc.AbstractChannel,
    customer_id: uuid.UUID,
    field: str,
    value: Any,
    reason: str,
) -> None:
    target = await confirmed_order(sales, financial, customer_id)
    forged = dispatched(target)
    forged["payload"][field] = value
    await publish_raw(channel, forged, "logistics.shipment.dispatched")
    for queue in (SALES_DLQ, FINANCIAL_DLQ):
        await assert_refused(
            channel, queue, forged, "logistics.shipment.dispatched", Refusal(reason)
        )
    await assert_untouched(sales, financial, target, forged["event_id"])


async def test_an_unknown_field_is_refused(
    sales: ServiceContext,
    financial: ServiceContext,
    channel: aio_pika.abc.AbstractChannel,
    customer_id: uuid.UUID,
) -> None:
    target = await confirmed_order(sales, financial, customer_id)
    forged = dispatched(target)
    forged["payload"]["status"] = "delivered"
    await publish_raw(channel, forged, "logistics.shipment.dispatched")
    refusal = Refusal("schema: payload.status: is not allowed")
    for queue in (SALES_DLQ, FINANCIAL_DLQ):
        await assert_refused(channel, queue, forged, "logistics.shipment.dispatched", refusal)
    await assert_untouched(sales, financial, target, forged["event_id"])


async def test_the_routing_key_decides_what_the_event_is(
    sales: ServiceContext,
    financial: ServiceContext,
    channel: aio_pika.abc.AbstractChannel,
    customer_id: uuid.UUID,
) -> None:
    # A dispatch's body routed as a delivery: neither is applied.
    target = await confirmed_order(sales, financial, customer_id)
    forged = dispatched(target)
    await publish_raw(channel, forged, "logistics.shipment.delivered")
    refusal = Refusal(
        "routing key: the body's event_name 'logistics.shipment.dispatched' is not the routing "
        "key 'logistics.shipment.delivered'"
    )
    await assert_refused(channel, SALES_DLQ, forged, "logistics.shipment.delivered", refusal)
    await assert_untouched(sales, financial, target, forged["event_id"])


async def test_news_of_an_order_nobody_placed_is_dead_lettered(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    stranger = Target(str(uuid.uuid4()), "ORD-2026-999999", "nobody@example.com")
    forged = delivered(stranger)
    await publish_raw(channel, forged, "logistics.shipment.delivered")
    refusal = Refusal(
        f"order {stranger.order_id} is not an order of sales", error="DeadLetter", attempts=1
    )
    await assert_refused(channel, SALES_DLQ, forged, "logistics.shipment.delivered", refusal)
    assert not await in_inbox(sales, forged["event_id"])

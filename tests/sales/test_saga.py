"""Sales' side of the order saga on PostgreSQL: inventory's and financial's answers, then
logistics' news of the shipment, delivered in every order and duplicated, through the kit's own
consumer (envelope checks, inbox, unit of work, dead letters), and the end state and the events
are the same each time.

Orders are placed with the real command (priced from snapshots the test hands it, as the
catalogue would); each answer is a real envelope, delivered as RabbitMQ would deliver it to
`sales.queue`, one after the other.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from itertools import permutations
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from generated.sales import models
from generated.topology import TOPOLOGY
from services.platform import Problem
from services.platform.core.scope import Caller, Principal
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import (
    InProcessRouter,
)
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.service import ServiceContext
from services.sales.catalogue import ProductSnapshot
from services.sales.commands import customers, orders
from services.sales.service import definition
from services.sales.tables import Order, OrderStatusChange
from tests.support.consuming import Deliver, consumer_of, consuming_context
from tests.support.events import envelope

pytestmark = pytest.mark.integration

STAFF = Caller(
    principal=Principal(
        str(uuid.uuid4()),
        "user",
        frozenset({"sales.orders.create", "sales.orders.view", "sales.orders.cancel"}),
    ),
    client_ip=None,
    request_id=None,
    correlation_id=None,
)
KEYBOARD = ProductSnapshot(
    product_id=uuid.uuid4(),
    sku="KB-SAGA-001",
    name="Saga keyboard",
    price=Decimal("100.00"),
    currency="BRL",
    status="active",
    version=1,
)


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]]) -> Settings:
    return load_settings("sales", 8003, {**scoped_env("sales_saga"), "ERP_RETRY_DELAYS": "0.01"})


@pytest.fixture(scope="module")
def router() -> InProcessRouter:
    return InProcessRouter(TOPOLOGY)


@pytest.fixture(scope="module")
async def ctx(settings: Settings, router: InProcessRouter) -> AsyncIterator[ServiceContext]:
    async with consuming_context(definition, settings, router) as running:
        yield running


@pytest.fixture(scope="module")
async def customer_id(ctx: ServiceContext) -> UUID:
    document = "39053344705"
    body = models.CustomerCreate(
        name="Saga Customer",
        email=f"saga-{uuid.uuid4().hex[:8]}@example.com",
        document=document,
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
    async with ctx.unit_of_work() as uow:
        created = await customers.create_customer(uow, body)
        await uow.commit()
    return created.id


@pytest.fixture(scope="module")
def deliver(ctx: ServiceContext, router: InProcessRouter) -> Deliver:
    return consumer_of(ctx, router)


async def place(ctx: ServiceContext, customer_id: UUID, quantity: int = 1) -> models.Order:
    async def lookup(ids: Sequence[UUID]) -> dict[UUID, ProductSnapshot]:
        return {KEYBOARD.product_id: KEYBOARD}

    body = models.OrderCreate.model_validate(
        {
            "customer_id": str(customer_id),
            "items": [{"product_id": str(KEYBOARD.product_id), "quantity": quantity}],
            "payment_method": "pix",
        }
    )
    async with ctx.unit_of_work() as uow:
        placed = await orders.place_order(uow, STAFF, body, lookup)
        await uow.commit()
    return placed


# --- the answers, as inventory and financial publish them --------------------------------------


def reserved(order: models.Order) -> dict[str, Any]:
    return envelope(
        "inventory.stock.reserved",
        {
            "order_id": str(order.id),
            "reservation_id": str(uuid.uuid4()),
            "items": [
                {
                    "product_id": str(KEYBOARD.product_id),
                    "warehouse_id": str(uuid.uuid4()),
                    "quantity": 1,
                }
            ],
            "expires_at": "2030-01-01T00:00:00Z",
        },
    )


def reservation_failed(order: models.Order) -> dict[str, Any]:
    return envelope(
        "inventory.stock.reservation_failed",
        {
            "order_id": str(order.id),
            "reason": "insufficient_stock",
            "items": [{"product_id": str(KEYBOARD.product_id), "requested": 1, "available": 0}],
        },
    )


def released(order: models.Order, reason: str = "expired") -> dict[str, Any]:
    return envelope(
        "inventory.stock.released",
        {"order_id": str(order.id), "reservation_id": None, "reason": reason, "items": []},
    )


def _payment(order: models.Order) -> dict[str, Any]:
    return {
        "order_id": str(order.id),
        "order_number": order.order_number,
        "payment_id": str(uuid.uuid4()),
        "customer_id": str(order.customer_id),
        "amount": order.total,
        "currency": order.currency,
        "method": "pix",
    }


def processed(order: models.Order) -> dict[str, Any]:
    return envelope(
        "financial.payment.processed",
        {**_payment(order), "gateway_reference": "SIM-1", "processed_at": "2026-01-01T00:00:00Z"},
    )


def failed(order: models.Order) -> dict[str, Any]:
    return envelope(
        "financial.payment.failed",
        {**_payment(order), "reason": "card_declined", "processed_at": "2026-01-01T00:00:00Z"},
    )


Answer = Callable[[models.Order], dict[str, Any]]


async def state(ctx: ServiceContext, order_id: UUID) -> tuple[str, str, str, list[str]]:
    """(status, stock_status, payment_status, the order's outbox events after its creation)."""
    async with ctx.database.session() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        rows = await session.scalars(select(OutboxMessage).order_by(col(OutboxMessage.id)))
        names = [
            row.event_name
            for row in rows
            if json.loads(row.body)["payload"].get("order_id") == str(order_id)
            and row.event_name != "sales.order.created"
        ]
        return order.status, order.stock_status, order.payment_status, names


def arrivals(answers: Iterable[object]) -> list[tuple[int, ...]]:
    """Every arrival order of the answers, each delivered twice (a redelivery), deduplicated."""
    twice = [index for index, _ in enumerate(answers) for _ in range(2)]
    return sorted(set(permutations(twice)))


SCENARIOS = [
    (
        "reserved and paid",
        (reserved, processed),
        ("confirmed", "reserved", "approved"),
        ["sales.order.confirmed"],
    ),
    (
        "no stock",
        (reservation_failed, processed),
        ("cancelled", "failed", "approved"),
        ["sales.order.cancelled"],
    ),
    (
        "declined",
        (reserved, failed),
        ("cancelled", "reserved", "declined"),
        ["sales.order.cancelled"],
    ),
    (
        "both fail",
        (reservation_failed, failed),
        ("cancelled", "failed", "declined"),
        ["sales.order.cancelled"],
    ),
    (
        "reservation expired",
        (released, processed),
        ("cancelled", "released", "approved"),
        ["sales.order.cancelled"],
    ),
]


@pytest.mark.parametrize(
    ("answers", "end", "announced"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
async def test_any_arrival_order_any_number_of_times_ends_the_same(
    ctx: ServiceContext,
    customer_id: UUID,
    deliver: Callable[[dict[str, Any]], Any],
    answers: tuple[Answer, ...],
    end: tuple[str, str, str],
    announced: list[str],
) -> None:
    for arrival in arrivals(answers):
        order = await place(ctx, customer_id)
        bodies = [answer(order) for answer in answers]  # one event each, delivered twice
        for index in arrival:
            delivery = await deliver(bodies[index])
            assert delivery.handled, (arrival, index, delivery)
        status, stock, payment, events = await state(ctx, order.id)
        assert (status, stock, payment) == end, arrival
        assert events == announced, arrival


async def test_a_waiting_order_shows_what_it_waits_for(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await place(ctx, customer_id)
    assert order.waiting_for == [models.SagaStep.stock, models.SagaStep.payment]
    await deliver(processed(order))
    async with ctx.database.session() as session:
        row = await session.get(Order, order.id)
        assert row is not None
        lines = await orders.order_items(session, [order.id])
        shown = orders.order_model(row, lines[order.id])
    assert shown.status == models.OrderStatus.pending
    assert shown.waiting_for == [models.SagaStep.stock]


async def test_a_customer_cancellation_overtaking_the_answers_stays_cancelled(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await place(ctx, customer_id)
    async with ctx.unit_of_work() as uow:
        await orders.cancel_order(uow, STAFF, order.id, "Customer changed their mind")
        await uow.commit()
    for body in (reserved(order), processed(order), released(order, "cancelled")):
        assert (await deliver(body)).handled
    status, stock, payment, events = await state(ctx, order.id)
    assert (status, stock, payment) == ("cancelled", "released", "approved")
    # One cancellation, whose event makes inventory release and financial refund.
    assert events == ["sales.order.cancelled"]


async def test_a_reservation_released_under_a_confirmed_order_cancels_it(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await place(ctx, customer_id)
    for body in (reserved(order), processed(order), released(order)):
        await deliver(body)
    status, _, _, events = await state(ctx, order.id)
    assert status == "cancelled"
    assert events == ["sales.order.confirmed", "sales.order.cancelled"]


async def test_answers_about_unknown_orders_or_other_amounts_are_dead_lettered(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await place(ctx, customer_id)
    stranger = order.model_copy(update={"id": uuid.uuid4()})
    unknown = await deliver(reserved(stranger))
    assert unknown.dead_letter_reason == f"order {stranger.id} is not an order of sales"
    wrong = processed(order)
    wrong["payload"]["amount"] = "0.01"
    refused = await deliver(wrong)
    assert refused.dead_letter_reason == (
        f"order {order.id} totals {order.total} BRL, the payment event states 0.01 BRL"
    )
    status, _, payment, _ = await state(ctx, order.id)
    assert (status, payment) == ("pending", "pending")


async def test_the_history_names_who_moved_the_order(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await place(ctx, customer_id)
    answer = reserved(order)
    await deliver(answer)
    await deliver(failed(order))
    async with ctx.database.session() as session:
        changes = list(
            await session.scalars(
                select(OrderStatusChange)
                .where(col(OrderStatusChange.order_id) == order.id)
                .order_by(col(OrderStatusChange.id))
            )
        )
    assert [(c.from_status, c.to_status, c.actor) for c in changes] == [
        (None, "pending", STAFF.subject),
        ("pending", "cancelled", "financial"),
    ]
    assert changes[1].reason == "Payment declined: card_declined"
    assert changes[1].event_id is not None


async def test_orders_that_never_get_their_answers_are_cancelled_at_their_deadline(
    ctx: ServiceContext, customer_id: UUID
) -> None:
    stale = await place(ctx, customer_id)
    fresh = await place(ctx, customer_id)
    async with ctx.unit_of_work() as uow:
        await uow.session.execute(
            update(Order)
            .where(col(Order.id) == stale.id)
            .values(created_at=stale.created_at - timedelta(hours=1))
        )
        await uow.commit()
    assert await orders.expire_stale_orders(ctx) >= 1
    status, _, _, events = await state(ctx, stale.id)
    assert status == "cancelled"
    assert events == ["sales.order.cancelled"]
    assert (await state(ctx, fresh.id))[0] == "pending"


async def test_order_numbers_are_consecutive_under_concurrency(
    ctx: ServiceContext, customer_id: UUID
) -> None:
    placed = await asyncio.gather(*(place(ctx, customer_id) for _ in range(8)))
    numbers = sorted(int(order.order_number[-6:]) for order in placed)
    assert numbers == list(range(numbers[0], numbers[0] + 8))


# --- after confirmation: logistics' news (ADR 0022) --------------------------------------------

SHIPPED_AT = "2026-01-02T09:00:00Z"
DELIVERED_AT = "2026-01-04T15:30:00Z"


async def confirmed(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> models.Order:
    order = await place(ctx, customer_id)
    for body in (reserved(order), processed(order)):
        assert (await deliver(body)).handled
    return order


@dataclass(frozen=True)
class Parcel:
    """One shipment of an order, as logistics names it in its events."""

    order: models.Order
    shipment_id: str
    tracking_code: str = "BR7K3M9Q2X4ZP"
    carrier_code: str = "CORREIOS"

    def _common(self) -> dict[str, Any]:
        return {
            "shipment_id": self.shipment_id,
            "order_id": str(self.order.id),
            "order_number": self.order.order_number,
            "customer_email": self.order.customer_email,
        }

    def dispatched(self) -> dict[str, Any]:
        return envelope(
            "logistics.shipment.dispatched",
            {
                **self._common(),
                "tracking_code": self.tracking_code,
                "carrier_code": self.carrier_code,
                "service_type": "standard",
                "estimated_delivery_date": "2026-01-06",
                "dispatched_at": SHIPPED_AT,
            },
        )

    def delivered(self) -> dict[str, Any]:
        return envelope(
            "logistics.shipment.delivered",
            {
                **self._common(),
                "tracking_code": self.tracking_code,
                "received_by": "Maria Souza",
                "delivered_at": DELIVERED_AT,
            },
        )

    def failed(self, tracking_code: str | None = "BR7K3M9Q2X4ZP") -> dict[str, Any]:
        return envelope(
            "logistics.shipment.failed",
            {
                **self._common(),
                "tracking_code": tracking_code,
                "reason": "Address not found",
                "failed_at": "2026-01-03T11:00:00Z",
            },
        )


def parcel(order: models.Order) -> Parcel:
    return Parcel(order, str(uuid.uuid4()))


async def shown(ctx: ServiceContext, order_id: UUID) -> models.Order:
    async with ctx.database.session() as session:
        row = await session.get(Order, order_id)
        assert row is not None
        lines = await orders.order_items(session, [order_id])
    return orders.order_model(row, lines[order_id])


async def announced(ctx: ServiceContext, order_id: UUID, name: str) -> list[dict[str, Any]]:
    """The payloads of the order's outbox events of that name."""
    async with ctx.database.session() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(col(OutboxMessage.event_name) == name)
            .order_by(col(OutboxMessage.id))
        )
        payloads = [json.loads(row.body)["payload"] for row in rows]
    return [payload for payload in payloads if payload["order_id"] == str(order_id)]


async def notes(ctx: ServiceContext, order_id: UUID) -> list[tuple[str | None, str, str]]:
    async with ctx.database.session() as session:
        changes = await session.scalars(
            select(OrderStatusChange)
            .where(col(OrderStatusChange.order_id) == order_id)
            .order_by(col(OrderStatusChange.id))
        )
        return [(change.from_status, change.to_status, change.reason) for change in changes]


News = Callable[[Parcel], dict[str, Any]]
CONFIRMED = ["sales.order.confirmed"]
SHIPMENT_SCENARIOS: list[tuple[str, tuple[News, ...], tuple[str, str], list[str]]] = [
    (
        "dispatched, delivered and failed",
        (Parcel.dispatched, Parcel.delivered, Parcel.failed),
        ("completed", "delivered"),
        [*CONFIRMED, "sales.order.shipped", "sales.order.completed"],
    ),
    (
        "dispatched and delivered",
        (Parcel.dispatched, Parcel.delivered),
        ("completed", "delivered"),
        [*CONFIRMED, "sales.order.shipped", "sales.order.completed"],
    ),
    (
        "dispatched and failed",
        (Parcel.dispatched, Parcel.failed),
        ("shipped", "failed"),
        [*CONFIRMED, "sales.order.shipped"],
    ),
    ("failed", (Parcel.failed,), ("confirmed", "failed"), CONFIRMED),
]


@pytest.mark.parametrize(
    ("news", "end", "events"),
    [s[1:] for s in SHIPMENT_SCENARIOS],
    ids=[s[0] for s in SHIPMENT_SCENARIOS],
)
async def test_logistics_news_in_any_order_any_number_of_times_ends_the_same(
    ctx: ServiceContext,
    customer_id: UUID,
    deliver: Callable[[dict[str, Any]], Any],
    news: tuple[News, ...],
    end: tuple[str, str],
    events: list[str],
) -> None:
    for arrival in arrivals(news):
        order = await confirmed(ctx, customer_id, deliver)
        shipment = parcel(order)
        bodies = [event(shipment) for event in news]  # one event each, delivered twice
        for index in arrival:
            delivery = await deliver(bodies[index])
            assert delivery.handled, (arrival, index, delivery)
        after = await shown(ctx, order.id)
        assert after.shipment is not None, arrival
        assert (after.status.value, after.shipment.status.value) == end, arrival
        assert (await state(ctx, order.id))[3] == events, arrival
        assert after.shipment.id == UUID(shipment.shipment_id)
        if "sales.order.shipped" in events:
            # Also when the delivery overtook the dispatch: the dispatch's carrier, its time.
            [shipped] = await announced(ctx, order.id, "sales.order.shipped")
            assert shipped == {
                "order_id": str(order.id),
                "order_number": order.order_number,
                "customer_id": str(order.customer_id),
                "customer_email": order.customer_email,
                "shipment_id": shipment.shipment_id,
                "tracking_code": "BR7K3M9Q2X4ZP",
                "carrier_code": "CORREIOS",
                "shipped_at": SHIPPED_AT,
            }, arrival
            assert (after.shipment.carrier_code, after.shipment.tracking_code) == (
                "CORREIOS",
                "BR7K3M9Q2X4ZP",
            )
        if "sales.order.completed" in events:
            [completed] = await announced(ctx, order.id, "sales.order.completed")
            assert completed["delivered_at"] == DELIVERED_AT, arrival


async def test_a_delivery_overtaking_its_dispatch_waits_for_it_then_both_go_out(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await confirmed(ctx, customer_id, deliver)
    shipment = parcel(order)
    assert (await deliver(shipment.delivered())).handled
    waiting = await shown(ctx, order.id)
    assert waiting.status == models.OrderStatus.confirmed
    assert waiting.shipment is not None
    assert waiting.shipment.status == models.ShipmentStatus.delivered
    assert (await notes(ctx, order.id))[-1] == (
        "confirmed",
        "confirmed",
        "Shipment delivered to Maria Souza; waiting for its dispatch",
    )
    assert (await deliver(shipment.dispatched())).handled
    assert (await notes(ctx, order.id))[-2:] == [
        ("confirmed", "shipped", "Shipment dispatched"),
        ("shipped", "completed", "Shipment delivered"),
    ]


async def test_a_failed_shipment_shows_on_the_order_and_a_retry_clears_it(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await confirmed(ctx, customer_id, deliver)
    first = parcel(order)
    await deliver(first.dispatched())
    await deliver(first.failed())
    failed = await shown(ctx, order.id)
    assert failed.status == models.OrderStatus.shipped
    assert failed.shipment is not None
    assert failed.shipment.status == models.ShipmentStatus.failed
    assert failed.shipment.failure_reason == "Address not found"
    assert (await notes(ctx, order.id))[-1] == (
        "shipped",
        "shipped",
        "Shipment failed: Address not found",
    )

    retry = Parcel(order, str(uuid.uuid4()), tracking_code="QX4ZP7K3M9BR2", carrier_code="JADLOG")
    await deliver(retry.dispatched())
    await deliver(first.failed())  # the old shipment's news, late: stale
    again = await shown(ctx, order.id)
    assert again.shipment is not None
    assert (again.shipment.id, again.shipment.status) == (
        UUID(retry.shipment_id),
        models.ShipmentStatus.dispatched,
    )
    assert (again.shipment.carrier_code, again.shipment.failure_reason) == ("JADLOG", None)
    await deliver(retry.delivered())
    status, _, _, events = await state(ctx, order.id)
    assert status == "completed"
    # One shipped (the first dispatch), one completed (the retry's delivery).
    assert events == [*CONFIRMED, "sales.order.shipped", "sales.order.completed"]


async def test_staff_cancel_a_shipped_order_only_once_its_shipment_failed(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await confirmed(ctx, customer_id, deliver)
    shipment = parcel(order)
    await deliver(shipment.dispatched())
    with pytest.raises(Problem) as refused:
        async with ctx.unit_of_work() as uow:
            await orders.cancel_order(uow, STAFF, order.id, "Customer changed their mind")
    assert refused.value.status == 409
    assert refused.value.detail == (
        "A shipped order can be cancelled only while its shipment has failed."
    )

    await deliver(shipment.failed())
    async with ctx.unit_of_work() as uow:
        cancelled = await orders.cancel_order(uow, STAFF, order.id, "Undeliverable")
        await uow.commit()
    assert cancelled.status == models.OrderStatus.cancelled
    events = (await state(ctx, order.id))[3]
    assert events == [*CONFIRMED, "sales.order.shipped", "sales.order.cancelled"]
    [cancellation] = await announced(ctx, order.id, "sales.order.cancelled")
    assert cancellation["reason"] == "Undeliverable"

    # A late delivery of the failed parcel leaves the order cancelled, noted, nothing emitted.
    assert (await deliver(shipment.delivered())).handled
    assert (await state(ctx, order.id))[0] == "cancelled"
    assert (await state(ctx, order.id))[3] == events
    assert (await notes(ctx, order.id))[-1] == (
        "cancelled",
        "cancelled",
        "Cancelled before logistics' news: Shipment delivered to Maria Souza",
    )


async def test_a_completed_order_cannot_be_cancelled(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    order = await confirmed(ctx, customer_id, deliver)
    shipment = parcel(order)
    await deliver(shipment.dispatched())
    await deliver(shipment.delivered())
    with pytest.raises(Problem) as refused:
        async with ctx.unit_of_work() as uow:
            await orders.cancel_order(uow, STAFF, order.id, "Too late")
    assert refused.value.status == 409
    assert refused.value.detail == "An order that is completed cannot become cancelled."


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-first", "dispatch-first"])
async def test_a_cancellation_racing_a_dispatch_leaves_the_order_cancelled(
    ctx: ServiceContext,
    customer_id: UUID,
    deliver: Callable[[dict[str, Any]], Any],
    cancel_first: bool,
) -> None:
    """Sales cancels the confirmed order while logistics dispatches it: whichever sales hears
    first, sales' cancellation of a confirmed order goes out, so financial refunds."""
    order = await confirmed(ctx, customer_id, deliver)
    shipment = parcel(order)

    async def cancel() -> None:
        async with ctx.unit_of_work() as uow:
            await orders.cancel_order(uow, STAFF, order.id, "Customer changed their mind")
            await uow.commit()

    if cancel_first:
        await cancel()
        assert (await deliver(shipment.dispatched())).handled
        status, _, _, events = await state(ctx, order.id)
        assert (status, events) == ("cancelled", [*CONFIRMED, "sales.order.cancelled"])
        assert (await notes(ctx, order.id))[-1][:2] == ("cancelled", "cancelled")
    else:
        # The dispatch came first: the order is shipped, its shipment live; staff learn that
        # the parcel is gone (logistics fails it) and then cancel.
        await deliver(shipment.dispatched())
        await deliver(shipment.failed())
        await cancel()
        status, _, _, events = await state(ctx, order.id)
        assert (status, events) == (
            "cancelled",
            [*CONFIRMED, "sales.order.shipped", "sales.order.cancelled"],
        )


async def test_logistics_news_about_unknown_pending_or_renumbered_orders_is_dead_lettered(
    ctx: ServiceContext, customer_id: UUID, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    pending = await place(ctx, customer_id)
    stranger = pending.model_copy(update={"id": uuid.uuid4()})
    unknown = await deliver(parcel(stranger).dispatched())
    assert unknown.dead_letter_reason == f"order {stranger.id} is not an order of sales"
    early = await deliver(parcel(pending).delivered())
    assert early.dead_letter_reason == (
        f"order {pending.id} is pending: logistics ships confirmed orders only"
    )
    order = await confirmed(ctx, customer_id, deliver)
    renumbered = parcel(order.model_copy(update={"order_number": "ORD-1999-000001"}))
    wrong = await deliver(renumbered.dispatched())
    assert wrong.dead_letter_reason == (
        f"order {order.id} is {order.order_number}, the shipment event states ORD-1999-000001"
    )
    after = await shown(ctx, order.id)
    assert (after.status, after.shipment) == (models.OrderStatus.confirmed, None)

"""Logistics' side of the order saga on PostgreSQL: sales' confirmation and cancellation and
financial's payment delivered in every order and each twice, through the kit's own consumer
(envelope checks, inbox, unit of work, dead letters): the shipment ends the same each time, and
every event logistics emits is valid against the AsyncAPI document."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import permutations
from typing import Any
from uuid import UUID

import pytest
from sqlmodel import col, select

from generated.events.publishers import EVENTS
from generated.logistics import models
from generated.topology import TOPOLOGY
from services.logistics import consumers, domain
from services.logistics.commands import shipments
from services.logistics.service import definition
from services.logistics.tables import Carrier, Shipment, ShipmentHistory
from services.platform import DeadLetter, UnitOfWork, utc_now
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import (
    InProcessRouter,
)
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.service import ServiceContext
from tests.support.consuming import Deliver, consumer_of, consuming_context
from tests.support.events import assert_conforms, envelope

pytestmark = pytest.mark.integration

WAREHOUSE = {"ERP_WAREHOUSE_CITY": "Jundiaí", "ERP_WAREHOUSE_ZIP_CODE": "13201-000"}
DESTINATION = {
    "street": "Rua das Flores",
    "number": "12",
    "complement": None,
    "neighborhood": "Centro",
    "city": "Curitiba",
    "state": "PR",
    "zip_code": "80010-000",
    "country": "BR",
}


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]]) -> Settings:
    env = {**scoped_env("logistics_saga"), "ERP_RETRY_DELAYS": "0.01", **WAREHOUSE}
    return load_settings("logistics", 8004, env)


@pytest.fixture(scope="module")
def router() -> InProcessRouter:
    return InProcessRouter(TOPOLOGY)


@pytest.fixture(scope="module")
async def ctx(settings: Settings, router: InProcessRouter) -> AsyncIterator[ServiceContext]:
    async with consuming_context(definition, settings, router, consumers.use_warehouse) as running:
        yield running


@pytest.fixture(scope="module")
def deliver(ctx: ServiceContext, router: InProcessRouter) -> Deliver:
    return consumer_of(ctx, router)


@dataclass(frozen=True)
class Order:
    id: UUID
    number: str


def new_order() -> Order:
    return Order(uuid.uuid4(), f"ORD-2026-{uuid.uuid4().int % 1_000_000:06d}")


def _event(name: str, payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return envelope(name, payload, event_version=EVENTS[name].version, **changes)


def confirmed(order: Order, **changes: Any) -> dict[str, Any]:
    return _event(
        "sales.order.confirmed",
        {
            "order_id": str(order.id),
            "order_number": order.number,
            "customer_id": str(uuid.uuid4()),
            "customer_email": "cliente@example.com",
            "total": "125.00",
            "currency": "BRL",
            "shipping_address": DESTINATION,
            "items": [{"product_id": str(uuid.uuid4()), "quantity": 1}],
        },
        **changes,
    )


def processed(order: Order) -> dict[str, Any]:
    return _event(
        "financial.payment.processed",
        {
            "order_id": str(order.id),
            "order_number": order.number,
            "payment_id": str(uuid.uuid4()),
            "customer_id": str(uuid.uuid4()),
            "customer_email": None,
            "amount": "125.00",
            "currency": "BRL",
            "method": "pix",
            "gateway_reference": "SIM-1",
            "processed_at": "2026-01-01T00:00:00Z",
        },
    )


def cancelled(order: Order) -> dict[str, Any]:
    return _event(
        "sales.order.cancelled",
        {
            "order_id": str(order.id),
            "order_number": order.number,
            "customer_id": str(uuid.uuid4()),
            "customer_email": "cliente@example.com",
            "reason": "Customer changed their mind",
            "items": [{"product_id": str(uuid.uuid4()), "quantity": 1}],
        },
    )


Event = Callable[[Order], dict[str, Any]]


async def shipments_of(ctx: ServiceContext, order_id: UUID) -> list[Shipment]:
    async with ctx.database.session() as session:
        rows = await session.scalars(
            select(Shipment)
            .where(col(Shipment.order_id) == order_id)
            .order_by(col(Shipment.attempt))
        )
        return list(rows)


async def emitted(ctx: ServiceContext, order_id: UUID) -> list[dict[str, Any]]:
    """The envelopes logistics committed about the order, oldest first."""
    async with ctx.database.session() as session:
        rows = await session.scalars(select(OutboxMessage).order_by(col(OutboxMessage.id)))
        bodies = [json.loads(row.body) for row in rows]
    return [body for body in bodies if body["payload"].get("order_id") == str(order_id)]


def arrivals(events: Iterable[Event]) -> list[tuple[int, ...]]:
    """Every arrival order of the events, each delivered twice, deduplicated."""
    twice = [index for index, _ in enumerate(events) for _ in range(2)]
    return sorted(set(permutations(twice)))


SCENARIOS = [
    ("confirmed alone", (confirmed,), ["pending"], ["logistics.shipment.created"]),
    ("confirmed and paid", (confirmed, processed), ["preparing"], ["logistics.shipment.created"]),
    ("paid, never confirmed", (processed,), [], []),
    ("confirmed, then cancelled", (confirmed, cancelled), None, None),
    ("cancelled and paid", (cancelled, processed), [], []),
]


@pytest.mark.parametrize(
    ("events", "statuses", "announced"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
async def test_any_arrival_order_any_number_of_times_ends_the_same(
    ctx: ServiceContext,
    deliver: Deliver,
    events: tuple[Event, ...],
    statuses: list[str] | None,
    announced: list[str] | None,
) -> None:
    for arrival in arrivals(events):
        order = new_order()
        bodies = [event(order) for event in events]  # one event each, delivered twice
        for index in arrival:
            delivery = await deliver(bodies[index])
            assert delivery.handled, (arrival, index, delivery)
        found = [row.status for row in await shipments_of(ctx, order.id)]
        bodies_out = await emitted(ctx, order.id)
        for body in bodies_out:
            assert_conforms(json.dumps(body).encode())
        names = [body["event_name"] for body in bodies_out]
        if statuses is None:
            # A cancellation that came first leaves nothing; one that came after the
            # confirmation cancels the shipment the confirmation created.
            confirmation_first = arrival.index(0) < arrival.index(1)
            assert found == (["cancelled"] if confirmation_first else []), arrival
            expected = ["logistics.shipment.created"] if confirmation_first else []
            assert names == expected, arrival
        else:
            assert found == statuses, arrival
            assert names == announced, arrival


async def test_every_permutation_of_all_three_converges(
    ctx: ServiceContext, deliver: Deliver
) -> None:
    """Confirmed, paid and cancelled: cancelled when the confirmation came before the
    cancellation (created then cancelled), nothing otherwise — and never a second shipment."""
    for arrival in sorted(set(permutations([0, 1, 2]))):
        order = new_order()
        bodies = [confirmed(order), processed(order), cancelled(order)]
        for index in (*arrival, *arrival):
            assert (await deliver(bodies[index])).handled
        found = [row.status for row in await shipments_of(ctx, order.id)]
        assert found == (["cancelled"] if arrival.index(0) < arrival.index(2) else []), arrival


async def test_racing_confirmations_and_payment_make_one_preparing_shipment(
    ctx: ServiceContext, deliver: Deliver
) -> None:
    """Two confirmations (new event ids) and the payment at the same instant: the first to
    create the order's signals row wins, the others meet its key, are retried and find it."""
    for _ in range(5):
        order = new_order()
        results = await asyncio.gather(
            deliver(confirmed(order)), deliver(confirmed(order)), deliver(processed(order))
        )
        assert all(result.handled for result in results), results
        assert [row.status for row in await shipments_of(ctx, order.id)] == ["preparing"]
        names = [body["event_name"] for body in await emitted(ctx, order.id)]
        assert names == ["logistics.shipment.created"]


async def test_a_shipment_on_its_way_keeps_going_when_the_order_is_cancelled(
    ctx: ServiceContext, deliver: Deliver
) -> None:
    order = new_order()
    await deliver(confirmed(order))
    await deliver(processed(order))
    [shipment] = await shipments_of(ctx, order.id)
    async with ctx.unit_of_work() as uow:
        body = models.ShipmentDispatch.model_validate(
            {"carrier_code": "CORREIOS", "service_type": "standard"}
        )
        await _ensure_carrier(uow)
        await shipments.dispatch(uow, shipment.id, body, None)
        await uow.commit()
    assert (await deliver(cancelled(order))).handled
    assert (await deliver(cancelled(order))).handled  # another event id, the same news
    [after] = await shipments_of(ctx, order.id)
    assert after.status == "dispatched"
    async with ctx.database.session() as session:
        notes = list(
            await session.scalars(
                select(ShipmentHistory.message)
                .where(col(ShipmentHistory.shipment_id) == shipment.id)
                .order_by(col(ShipmentHistory.id))
            )
        )
    assert notes[-1] == shipments.CANCELLED_AFTER_DISPATCH
    assert notes.count(shipments.CANCELLED_AFTER_DISPATCH) == 1


async def _ensure_carrier(uow: UnitOfWork) -> None:
    found = await uow.session.scalars(select(Carrier).where(col(Carrier.code) == "CORREIOS"))
    if found.first() is None:
        now = utc_now()
        uow.session.add(
            Carrier(
                code="CORREIOS",
                name="Correios",
                service_types=["standard"],
                created_at=now,
                updated_at=now,
            )
        )
        await uow.session.flush()


async def test_the_created_event_carries_the_warehouse_and_the_address_and_conforms(
    ctx: ServiceContext, deliver: Deliver
) -> None:
    order = new_order()
    await deliver(processed(order))
    await deliver(confirmed(order))
    [created] = await emitted(ctx, order.id)
    assert_conforms(json.dumps(created).encode())
    payload = created["payload"]
    assert (payload["status"], payload["attempt"]) == ("preparing", 1)
    assert payload["origin"]["city"] == "Jundiaí"  # the configured warehouse
    assert payload["origin"]["zip_code"] == "13201-000"
    assert payload["destination"] == DESTINATION
    assert payload["customer_email"] == "cliente@example.com"
    assert created["metadata"]["service"] == "logistics"
    assert created["causation_id"] is not None


async def test_forged_or_malformed_confirmations_are_dead_lettered_and_make_nothing(
    ctx: ServiceContext, deliver: Deliver
) -> None:
    order = new_order()
    forged = confirmed(order)
    forged["metadata"]["service"] = "inventory"
    refused = await deliver(forged)
    assert refused.dead_letter_reason is not None
    assert refused.dead_letter_reason.startswith("producer:")
    broken = confirmed(order)
    del broken["payload"]["shipping_address"]
    rejected = await deliver(broken)
    assert rejected.dead_letter_reason is not None
    assert rejected.dead_letter_reason.startswith("schema:")
    assert await shipments_of(ctx, order.id) == []


def test_an_illegal_move_in_a_consumer_is_a_dead_letter_naming_it() -> None:
    with (
        pytest.raises(DeadLetter) as refused,
        consumers.illegal_moves_dead_lettered("sales.order.cancelled"),
    ):
        domain.shipment_move(domain.ShipmentStatus.DELIVERED, domain.ShipmentStatus.CANCELLED)
    assert str(refused.value) == (
        "sales.order.cancelled: A shipment that is delivered cannot become cancelled."
    )

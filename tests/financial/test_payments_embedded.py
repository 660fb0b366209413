"""Financial's payments through the embedded harness (SQLite, the in-process broker): the use
cases the consumers call, with the simulated gateway under a fast retry policy, and what they
leave — the payment, the ledger and the outbox (checked against the AsyncAPI document) — plus
the HTTP reads over ASGI and the migration against tables.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from alembic import command
from sqlalchemy import create_engine
from sqlmodel import col, select

from generated.events.models import SalesOrderCancelledEvent, SalesOrderCreatedEvent
from services.financial import queries
from services.financial.commands import payments
from services.financial.domain import SummaryPeriod
from services.financial.gateway import ResilientGateway, RetryPolicy, SimulatedGateway
from services.financial.jobs import PAYMENT_RECOVERY
from services.financial.service import definition
from services.financial.tables import LedgerTransaction, Payment, metadata
from services.platform.persistence.db import alembic_config
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.consumers import DeadLetter
from services.platform.runtime.service import ServiceContext
from tests.support.embedded import StartEmbedded
from tests.support.events import assert_conforms
from tests.support.orders import order_cancelled, order_totalling
from tests.support.polling import eventually
from tests.support.schema import assert_migrations_match

FAST = RetryPolicy(attempts=3, attempt_timeout_seconds=0.5, first_wait_seconds=0.001)


@pytest.fixture
async def ctx(embedded: StartEmbedded) -> ServiceContext:
    return (await embedded(definition)).ctx


@pytest.fixture
def gateway() -> ResilientGateway:
    return ResilientGateway(SimulatedGateway(), FAST)


async def payment_of(ctx: ServiceContext, order_id: str) -> Payment | None:
    async with ctx.database.session() as session:
        found = await session.scalars(
            select(Payment).where(col(Payment.order_id) == UUID(order_id))
        )
        return found.first()


async def created(
    ctx: ServiceContext, gateway: ResilientGateway, envelope: dict[str, Any]
) -> Payment:
    """The consumer's transaction, and the charge after its commit: the payment as it is then."""
    event = SalesOrderCreatedEvent.model_validate(envelope)
    async with ctx.unit_of_work() as uow:
        await payments.receive_order(uow, event, payments.Charger(ctx, gateway))
        await uow.commit()
    payment = await payment_of(ctx, envelope["payload"]["order_id"])
    assert payment is not None
    return payment


async def cancelled(
    ctx: ServiceContext, gateway: ResilientGateway, envelope: dict[str, Any]
) -> Payment | None:
    """The consumer's transaction, and the refund after its commit: the payment then."""
    event = SalesOrderCancelledEvent.model_validate(envelope)
    async with ctx.unit_of_work() as uow:
        await payments.cancel_order(uow, event, payments.Charger(ctx, gateway))
        await uow.commit()
    return await payment_of(ctx, envelope["payload"]["order_id"])


async def outbox(ctx: ServiceContext, event_name: str) -> list[dict[str, Any]]:
    async with ctx.database.session() as session:
        bodies = await session.scalars(
            select(col(OutboxMessage.body))
            .where(col(OutboxMessage.event_name) == event_name)
            .order_by(col(OutboxMessage.id))
        )
        return [assert_conforms(body.encode()) for body in bodies]


async def ledger(ctx: ServiceContext, order_id: str) -> Sequence[tuple[str, str, str]]:
    async with ctx.database.session() as session:
        rows = await session.scalars(
            select(LedgerTransaction)
            .where(col(LedgerTransaction.order_id) == UUID(order_id))
            .order_by(col(LedgerTransaction.occurred_at))
        )
        return [(row.type, row.category, row.amount) for row in rows]


async def test_an_approved_payment_is_booked_and_announced(
    ctx: ServiceContext, gateway: ResilientGateway
) -> None:
    order = order_totalling("724.80")
    payment = await created(ctx, gateway, order)
    assert payment.status == "approved"
    assert payment.gateway_reference is not None
    assert await ledger(ctx, order["payload"]["order_id"]) == [("credit", "sales", "724.80")]
    [event] = await outbox(ctx, "financial.payment.processed")
    assert event["payload"]["order_id"] == order["payload"]["order_id"]
    assert event["payload"]["amount"] == "724.80"
    assert event["payload"]["payment_id"] == str(payment.id)


@pytest.mark.parametrize(
    ("total", "reason"),
    [
        ("100.51", "card_declined"),
        ("100.52", "insufficient_funds"),
        ("100.98", "gateway_unavailable"),
    ],
)
async def test_a_declined_payment_books_nothing_and_announces_the_failure(
    ctx: ServiceContext, gateway: ResilientGateway, total: str, reason: str
) -> None:
    order = order_totalling(total)
    payment = await created(ctx, gateway, order)
    assert (payment.status, payment.failure_reason) == ("declined", reason)
    assert await ledger(ctx, order["payload"]["order_id"]) == []
    [event] = await outbox(ctx, "financial.payment.failed")
    assert event["payload"]["reason"] == reason
    assert await outbox(ctx, "financial.payment.processed") == []


async def test_a_gateway_timeout_is_retried_and_charges_once(
    ctx: ServiceContext, gateway: ResilientGateway
) -> None:
    order = order_totalling("100.97")
    assert (await created(ctx, gateway, order)).status == "approved"
    assert isinstance(gateway.inner, SimulatedGateway)
    assert gateway.inner.charge_calls == 2
    assert len(await ledger(ctx, order["payload"]["order_id"])) == 1


async def test_the_same_order_again_changes_nothing(
    ctx: ServiceContext, gateway: ResilientGateway
) -> None:
    order = order_totalling("50.00")
    first = await created(ctx, gateway, order)
    # The same order in a new event (another event id: the inbox does not catch it).
    again = {**order, "event_id": str(uuid4())}
    assert (await created(ctx, gateway, again)).id == first.id
    assert len(await ledger(ctx, order["payload"]["order_id"])) == 1
    assert len(await outbox(ctx, "financial.payment.processed")) == 1


async def test_another_order_under_the_same_id_is_dead_lettered(
    ctx: ServiceContext, gateway: ResilientGateway
) -> None:
    order = order_totalling("50.00")
    await created(ctx, gateway, order)
    other = order_totalling("60.00", order_id=order["payload"]["order_id"])
    with pytest.raises(DeadLetter, match="another amount"):
        await created(ctx, gateway, other)


async def test_a_cancellation_after_approval_refunds_and_debits(
    ctx: ServiceContext, gateway: ResilientGateway
) -> None:
    order = order_totalling("80.00")
    await created(ctx, gateway, order)
    payment = await cancelled(ctx, gateway, order_cancelled(order, "Out of stock"))
    assert payment is not None
    assert payment.status == "refunded"
    assert payment.refunded_at is not None
    assert await ledger(ctx, order["payload"]["order_id"]) == [
        ("credit", "sales", "80.00"),
        ("debit", "refunds", "80.00"),
    ]
    [event] = await outbox(ctx, "financial.payment.refunded")
    assert event["payload"]["reason"] == "Out of stock"
    # A second cancellation (another event) refunds nothing more.
    assert (await cancelled(ctx, gateway, order_cancelled(order))) is not None
    assert len(await ledger(ctx, order["payload"]["order_id"])) == 2
    assert len(await outbox(ctx, "financial.payment.refunded")) == 1


async def test_a_cancellation_before_the_order_makes_the_late_order_charge_nothing(
    ctx: ServiceContext, gateway: ResilientGateway
) -> None:
    order = order_totalling("90.00")
    assert await cancelled(ctx, gateway, order_cancelled(order)) is None
    assert await cancelled(ctx, gateway, order_cancelled(order)) is None  # twice: still fine
    payment = await created(ctx, gateway, order)
    assert payment.status == "cancelled"
    assert payment.cancelled_at is not None
    assert isinstance(gateway.inner, SimulatedGateway)
    assert gateway.inner.charge_calls == 0
    assert await ledger(ctx, order["payload"]["order_id"]) == []
    assert await outbox(ctx, "financial.payment.processed") == []


async def test_a_cancellation_of_a_declined_payment_does_nothing(
    ctx: ServiceContext, gateway: ResilientGateway
) -> None:
    order = order_totalling("70.51")
    await created(ctx, gateway, order)
    payment = await cancelled(ctx, gateway, order_cancelled(order, "Payment failed"))
    assert payment is not None
    assert payment.status == "declined"
    assert await outbox(ctx, "financial.payment.refunded") == []


async def test_a_pending_payment_is_cancelled(
    ctx: ServiceContext, gateway: ResilientGateway
) -> None:
    order_id = uuid4()
    async with ctx.unit_of_work() as uow:
        uow.session.add(
            Payment(
                order_id=order_id,
                order_number="ORD-2025-000001",
                customer_id=uuid4(),
                amount="10.00",
                currency="BRL",
                method="boleto",
                status="pending",
            )
        )
        await uow.commit()
    envelope = order_cancelled(order_totalling("10.00", order_id=str(order_id)))
    payment = await cancelled(ctx, gateway, envelope)
    assert payment is not None
    assert payment.status == "cancelled"


async def test_the_consumers_on_the_in_process_broker_charge_and_refund(
    ctx: ServiceContext,
) -> None:
    order = order_totalling("66.00")
    cancel = order_cancelled(order, "Out of stock")
    for envelope, answer in ((order, "processed"), (cancel, "refunded")):
        await ctx.bus.publish(
            "sales.events",
            envelope["event_name"],
            json.dumps(envelope).encode(),
            message_id=envelope["event_id"],
        )

        async def announced(name: str = f"financial.payment.{answer}") -> list[dict[str, Any]]:
            return await outbox(ctx, name)

        [event] = await eventually(announced, what=answer)
        assert event["causation_id"] == envelope["event_id"]
        assert event["correlation_id"] == envelope["correlation_id"]
    payment = await payment_of(ctx, order["payload"]["order_id"])
    assert payment is not None
    assert payment.status == "refunded"
    assert await ledger(ctx, order["payload"]["order_id"]) == [
        ("credit", "sales", "66.00"),
        ("debit", "refunds", "66.00"),
    ]


@pytest.mark.parametrize("left", ["pending", "processing"])
async def test_the_recovery_job_charges_what_a_crash_left(ctx: ServiceContext, left: str) -> None:
    assert PAYMENT_RECOVERY in definition.periodic
    order_id, long_ago = uuid4(), datetime.now(UTC) - 2 * payments.STALE_AFTER
    async with ctx.unit_of_work() as uow:
        uow.session.add(
            Payment(
                order_id=order_id,
                order_number="ORD-2025-000002",
                customer_id=uuid4(),
                amount="12.00",
                currency="BRL",
                method="pix",
                status=left,
                created_at=long_ago,
                updated_at=long_ago,
            )
        )
        await uow.commit()

    # The service runs the job too (at start-up, then every period): whichever run takes the
    # payment up charges it, and the other finds it claimed.
    await PAYMENT_RECOVERY.run(ctx)

    async def settled() -> Payment | None:
        found = await payment_of(ctx, str(order_id))
        return found if found is not None and found.status != "processing" else None

    payment = await eventually(settled, what="the recovered payment", within=10)
    assert payment.status == "approved"
    assert await ledger(ctx, str(order_id)) == [("credit", "sales", "12.00")]
    [event] = await outbox(ctx, "financial.payment.processed")
    assert event["payload"]["order_id"] == str(order_id)


async def test_the_reads(embedded: StartEmbedded, gateway: ResilientGateway) -> None:
    service = await embedded(definition, http=True)
    approved = order_totalling("120.00")
    refunded = order_totalling("30.00")
    declined = order_totalling("40.51")
    for order in (approved, refunded, declined):
        await created(service.ctx, gateway, order)
    await cancelled(service.ctx, gateway, order_cancelled(refunded))

    page = await queries.list_payments(
        service.ctx, status="approved", method=None, page=1, per_page=15
    )
    assert [str(p.order_id) for p in page.data] == [approved["payload"]["order_id"]]
    by_order = await queries.get_order_payment(service.ctx, UUID(refunded["payload"]["order_id"]))
    assert by_order.status == "refunded"
    assert (await queries.get_payment(service.ctx, by_order.id)).order_id == by_order.order_id
    credits = await queries.list_transactions(
        service.ctx, kind="credit", category=None, start=None, end=None, page=1, per_page=15
    )
    assert sorted(t.amount for t in credits.data) == ["120.00", "30.00"]
    today = datetime.now(UTC).date()
    backwards = await queries.list_transactions(
        service.ctx,
        kind=None,
        category=None,
        start=today,
        end=today - timedelta(days=1),
        page=1,
        per_page=15,
    )
    assert (backwards.data, backwards.meta.total) == ([], 0)
    summary = await queries.summarise_transactions(
        service.ctx, start=today, end=today, period=SummaryPeriod.DAY
    )
    [totals] = summary.data
    assert (totals.credits, totals.debits, totals.net, totals.transactions) == (
        "150.00",
        "30.00",
        "120.00",
        3,
    )
    # Over HTTP the kit asks for credentials first (the real-server tests bring tokens).
    response = await service.http.get("/api/v1/payments")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_the_migration_creates_what_tables_py_declares(tmp_path: Path) -> None:
    assert definition.migrations is not None
    url = f"sqlite:///{tmp_path / 'service.db'}"
    command.upgrade(alembic_config(definition.migrations, url), "head")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert_migrations_match(definition.migrations, metadata, create_engine(url), fresh)

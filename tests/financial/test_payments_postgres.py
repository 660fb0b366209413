"""Financial's charging against the real PostgreSQL, with a gateway double that holds its
answers until the test lets it go and counts the money it takes and gives back per idempotency
key (a fake of our own port, honouring the keys as the port promises).

The charge runs after the consumer's commit (ADR 0012, "Charging outside the transaction"):
`pending` and then `processing` are committed and visible while the gateway works, no
transaction or lock is held meanwhile, and a cancellation at any moment — before the order,
while pending, during the charge, after it — leaves no money taken, with truthful events. A
process dying between the steps leaves work the recovery job finishes, charging once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import col, select

from generated.events.models import SalesOrderCancelledEvent, SalesOrderCreatedEvent
from services.financial import queries
from services.financial.commands import payments
from services.financial.gateway import DECLINED_CENTS, Charge, ChargeResult, Refund
from services.financial.service import definition
from services.financial.tables import LedgerTransaction
from services.platform.core.contracts import Topology
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import InProcessBus, InProcessRouter
from services.platform.persistence.db import Database, prepare_database
from services.platform.persistence.redis import Keys, connect_redis
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.service import ServiceContext
from tests.support.events import assert_conforms
from tests.support.orders import order_cancelled, order_totalling

pytestmark = pytest.mark.integration

SOON = 10  # seconds: anything the tests wait for happens well within it
NOW = timedelta(0)  # recovery of everything unfinished, however fresh


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]]) -> Settings:
    return load_settings("financial", 8005, scoped_env("financial_race"))


@pytest.fixture(scope="module")
async def ctx(settings: Settings) -> AsyncIterator[ServiceContext]:
    await prepare_database(definition.migrations, settings.database_url)
    running = ServiceContext(
        definition=definition,
        settings=settings,
        database=Database(settings),
        redis=connect_redis(settings),
        keys=Keys(settings.redis_prefix),
        bus=InProcessBus(InProcessRouter(Topology((), ())), service=definition.name),
        http=httpx.AsyncClient(),
    )
    yield running
    await running.http.aclose()
    await running.redis.aclose()
    await running.database.dispose()


class ProcessDied(BaseException):
    """The process ends here: nothing after it runs (not an Exception, so no handler in the
    code under test takes it for a failure to log and go on from)."""


class FakeGateway:
    """A payment gateway as the port describes one: every answer is remembered by idempotency
    key (a repeat gets it again and charges nothing more); `.51` is declined, anything else
    approved. Counts calls and the money taken and returned per key. `answer` holds each call
    until set; `die_after_charge` / `die_after_refund` end the process once the money moved,
    before the answer gets back."""

    def __init__(self) -> None:
        self.answers: dict[str, ChargeResult] = {}
        self.taken: dict[str, Decimal] = {}
        self.returned: dict[str, Decimal] = {}
        self.charge_calls: Counter[str] = Counter()
        self.refund_calls: Counter[str] = Counter()
        self.charging = asyncio.Event()
        self.answer = asyncio.Event()
        self.answer.set()
        self.die_after_charge = False
        self.die_after_refund = False

    def hold(self) -> None:
        self.answer.clear()

    async def charge(self, charge: Charge) -> ChargeResult:
        key = charge.idempotency_key
        self.charge_calls[key] += 1
        self.charging.set()
        await self.answer.wait()
        if key not in self.answers:
            declined = DECLINED_CENTS.get(charge.amount - int(charge.amount))
            self.answers[key] = ChargeResult(declined is None, f"FAKE-{key[:8]}", declined)
            if declined is None:
                self.taken[key] = charge.amount
        if self.die_after_charge:
            raise ProcessDied
        return self.answers[key]

    async def refund(self, refund: Refund) -> str:
        key = refund.idempotency_key
        self.refund_calls[key] += 1
        self.returned.setdefault(key, refund.amount)
        if self.die_after_refund:
            raise ProcessDied
        return f"FAKER-{key[:8]}"

    def kept(self, order_id: UUID) -> Decimal:
        """The money the gateway holds for the order now: taken minus returned."""
        taken = self.taken.get(str(order_id), Decimal(0))
        return taken - self.returned.get(f"refund-{order_id}", Decimal(0))


def created_event(total: str) -> SalesOrderCreatedEvent:
    return SalesOrderCreatedEvent.model_validate(order_totalling(total))


def cancelled_event(order: SalesOrderCreatedEvent) -> SalesOrderCancelledEvent:
    envelope = order_cancelled(order.model_dump(mode="json"), "Customer asked to cancel")
    envelope["correlation_id"] = str(uuid4())  # cancelled in a conversation of its own
    return SalesOrderCancelledEvent.model_validate(envelope)


async def deliver_order(
    ctx: ServiceContext,
    order: SalesOrderCreatedEvent,
    gateway: FakeGateway,
    first: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """`sales.order.created` as the consumer handles it: its transaction, then what runs after
    the commit — `first` (registered before the command's own) and the charge."""
    async with ctx.unit_of_work() as uow:
        if first is not None:
            uow.after_commit(first)
        await payments.receive_order(uow, order, payments.Charger(ctx, gateway))
        await uow.commit()


async def deliver_cancellation(
    ctx: ServiceContext, cancellation: SalesOrderCancelledEvent, gateway: FakeGateway
) -> None:
    async with ctx.unit_of_work() as uow:
        await payments.cancel_order(uow, cancellation, payments.Charger(ctx, gateway))
        await uow.commit()


async def status(ctx: ServiceContext, order_id: UUID) -> str:
    """What `GET /payments/by-order/{order_id}` answers (its query, on its own connection)."""
    return (await queries.get_order_payment(ctx, order_id)).status


async def ledger(ctx: ServiceContext, order_id: UUID) -> list[tuple[str, str]]:
    async with ctx.database.session() as session:
        rows = await session.execute(
            select(col(LedgerTransaction.type), col(LedgerTransaction.amount))
            .where(col(LedgerTransaction.order_id) == order_id)
            .order_by(col(LedgerTransaction.occurred_at))
        )
        return [(kind, amount) for kind, amount in rows.all()]


async def announced(
    ctx: ServiceContext, order_id: UUID, *, requests: bool = False
) -> list[dict[str, Any]]:
    """The order's payment outcomes in the outbox (with `requests`, also the
    `financial.payment.requested` every new payment announces first), in order, each checked
    against the AsyncAPI document."""
    async with ctx.database.session() as session:
        bodies = await session.scalars(
            select(col(OutboxMessage.body))
            .where(col(OutboxMessage.event_name).startswith("financial.payment."))
            .order_by(col(OutboxMessage.id))
        )
        envelopes = [assert_conforms(body.encode()) for body in bodies]
    return [
        e
        for e in envelopes
        if e["payload"]["order_id"] == str(order_id)
        and (requests or e["event_name"] != "financial.payment.requested")
    ]


def names(envelopes: list[dict[str, Any]]) -> list[str]:
    return [envelope["event_name"] for envelope in envelopes]


def assert_caused_by(envelope: dict[str, Any], cause: SalesOrderCreatedEvent | Any) -> None:
    assert envelope["correlation_id"] == str(cause.correlation_id)
    assert envelope["causation_id"] == str(cause.event_id)


async def test_pending_then_processing_are_visible_while_the_gateway_works(
    ctx: ServiceContext,
) -> None:
    order = created_event("250.00")
    order_id = order.payload.order_id
    gateway = FakeGateway()
    gateway.hold()
    seen: list[str] = []

    async def look() -> None:
        seen.append(await status(ctx, order_id))

    delivering = asyncio.create_task(deliver_order(ctx, order, gateway, first=look))
    await asyncio.wait_for(gateway.charging.wait(), timeout=SOON)
    assert seen == ["pending"]  # committed before the charge began
    assert await status(ctx, order_id) == "processing"
    async with ctx.database.session() as session:
        # While the gateway has the charge, this database holds no open transaction and no
        # advisory lock of the order's deliveries.
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%'"
            )
        )
        advisory = await session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        )
    assert (waiting, advisory) == (0, 0)

    gateway.answer.set()
    await asyncio.wait_for(delivering, timeout=SOON)
    assert await status(ctx, order_id) == "approved"
    assert await ledger(ctx, order_id) == [("credit", "250.00")]
    [processed] = await announced(ctx, order_id)
    assert processed["event_name"] == "financial.payment.processed"
    assert_caused_by(processed, order)


async def test_a_cancellation_while_pending_charges_nothing(ctx: ServiceContext) -> None:
    order = created_event("40.00")
    gateway = FakeGateway()

    async def cancel_before_the_charge() -> None:
        await deliver_cancellation(ctx, cancelled_event(order), gateway)

    await deliver_order(ctx, order, gateway, first=cancel_before_the_charge)

    assert await status(ctx, order.payload.order_id) == "cancelled"
    assert gateway.charge_calls == Counter()
    assert await ledger(ctx, order.payload.order_id) == []
    assert await announced(ctx, order.payload.order_id) == []


async def test_a_cancellation_during_the_charge_refunds_at_once_after_the_approval(
    ctx: ServiceContext,
) -> None:
    order = created_event("120.00")
    order_id = order.payload.order_id
    cancellation = cancelled_event(order)
    gateway = FakeGateway()
    gateway.hold()
    delivering = asyncio.create_task(deliver_order(ctx, order, gateway))
    await asyncio.wait_for(gateway.charging.wait(), timeout=SOON)

    # The cancellation does not wait for the gateway: it is recorded, the outcome decides.
    await asyncio.wait_for(deliver_cancellation(ctx, cancellation, gateway), timeout=SOON)
    assert await status(ctx, order_id) == "processing"
    gateway.answer.set()
    await asyncio.wait_for(delivering, timeout=SOON)

    assert await status(ctx, order_id) == "refunded"
    assert gateway.kept(order_id) == 0
    assert await ledger(ctx, order_id) == [("credit", "120.00"), ("debit", "120.00")]
    processed, refunded = await announced(ctx, order_id)
    assert names([processed, refunded]) == [
        "financial.payment.processed",
        "financial.payment.refunded",
    ]
    assert_caused_by(processed, order)
    assert_caused_by(refunded, cancellation)
    assert refunded["payload"]["reason"] == "Customer asked to cancel"


async def test_a_cancellation_during_a_declined_charge_leaves_it_declined(
    ctx: ServiceContext,
) -> None:
    order = created_event("120.51")
    order_id = order.payload.order_id
    gateway = FakeGateway()
    gateway.hold()
    delivering = asyncio.create_task(deliver_order(ctx, order, gateway))
    await asyncio.wait_for(gateway.charging.wait(), timeout=SOON)
    await deliver_cancellation(ctx, cancelled_event(order), gateway)
    gateway.answer.set()
    await asyncio.wait_for(delivering, timeout=SOON)

    assert await status(ctx, order_id) == "declined"
    assert gateway.kept(order_id) == 0
    assert gateway.refund_calls == Counter()
    assert await ledger(ctx, order_id) == []
    assert names(await announced(ctx, order_id)) == ["financial.payment.failed"]


async def test_a_cancellation_after_the_approval_refunds_once(ctx: ServiceContext) -> None:
    order = created_event("64.00")
    order_id = order.payload.order_id
    gateway = FakeGateway()
    await deliver_order(ctx, order, gateway)
    assert await status(ctx, order_id) == "approved"
    cancellation = cancelled_event(order)
    await deliver_cancellation(ctx, cancellation, gateway)
    await deliver_cancellation(ctx, cancelled_event(order), gateway)  # another event: no-op

    assert await status(ctx, order_id) == "refunded"
    assert gateway.kept(order_id) == 0
    assert gateway.refund_calls == Counter({f"refund-{order_id}": 1})
    processed, refunded = await announced(ctx, order_id)
    assert names([processed, refunded]) == [
        "financial.payment.processed",
        "financial.payment.refunded",
    ]
    assert_caused_by(refunded, cancellation)


async def test_a_cancellation_before_the_order_charges_nothing(ctx: ServiceContext) -> None:
    order = created_event("33.00")
    gateway = FakeGateway()
    await deliver_cancellation(ctx, cancelled_event(order), gateway)
    await deliver_order(ctx, order, gateway)

    assert await status(ctx, order.payload.order_id) == "cancelled"
    assert gateway.charge_calls == Counter()
    assert await announced(ctx, order.payload.order_id) == []


async def test_two_deliveries_of_one_order_at_once_charge_once(ctx: ServiceContext) -> None:
    order = created_event("75.00")
    again = order.model_copy(update={"event_id": uuid4()})  # a new event: not the inbox's
    gateway = FakeGateway()
    gateway.hold()
    first = asyncio.create_task(deliver_order(ctx, order, gateway))
    await asyncio.wait_for(gateway.charging.wait(), timeout=SOON)
    second = asyncio.create_task(deliver_order(ctx, again, gateway))
    await asyncio.sleep(0.3)
    gateway.answer.set()
    await asyncio.wait_for(asyncio.gather(first, second), timeout=SOON)

    assert await status(ctx, order.payload.order_id) == "approved"
    assert gateway.charge_calls == Counter({str(order.payload.order_id): 1})
    assert await ledger(ctx, order.payload.order_id) == [("credit", "75.00")]
    assert names(await announced(ctx, order.payload.order_id, requests=True)) == [
        "financial.payment.requested",
        "financial.payment.processed",
    ]


async def test_a_crash_before_the_charge_is_recovered(ctx: ServiceContext) -> None:
    order = created_event("88.00")
    order_id = order.payload.order_id
    gateway = FakeGateway()

    async def die() -> None:
        raise ProcessDied

    with pytest.raises(ProcessDied):
        await deliver_order(ctx, order, gateway, first=die)
    assert await status(ctx, order_id) == "pending"

    charger = payments.Charger(ctx, gateway)
    await payments.recover(charger)  # too recent: its charger may still be at work
    assert await status(ctx, order_id) == "pending"
    recovered = await payments.recover(charger, older_than=NOW)
    assert recovered.charged >= 1

    assert await status(ctx, order_id) == "approved"
    assert gateway.charge_calls[str(order_id)] == 1
    assert await ledger(ctx, order_id) == [("credit", "88.00")]
    [processed] = await announced(ctx, order_id)
    assert processed["event_name"] == "financial.payment.processed"
    assert_caused_by(processed, order)  # the recovery's event names the order as its cause


async def test_a_crash_with_the_answer_in_flight_is_recovered_and_charged_once(
    ctx: ServiceContext,
) -> None:
    order = created_event("91.00")
    order_id = order.payload.order_id
    gateway = FakeGateway()
    gateway.die_after_charge = True
    with pytest.raises(ProcessDied):
        await deliver_order(ctx, order, gateway)
    assert await status(ctx, order_id) == "processing"
    assert gateway.kept(order_id) == Decimal("91.00")  # the money is taken, nobody knows

    gateway.die_after_charge = False
    await payments.recover(payments.Charger(ctx, gateway), older_than=NOW)

    assert await status(ctx, order_id) == "approved"
    assert gateway.charge_calls[str(order_id)] == 2  # asked again, with the same key ...
    assert gateway.kept(order_id) == Decimal("91.00")  # ... and charged once
    assert await ledger(ctx, order_id) == [("credit", "91.00")]
    assert names(await announced(ctx, order_id)) == ["financial.payment.processed"]


@pytest.mark.parametrize(
    ("total", "booked", "event"),
    [
        ("19.00", [("credit", "19.00")], "financial.payment.processed"),
        ("19.51", [], "financial.payment.failed"),
    ],
)
async def test_a_recovery_racing_a_slow_charger_records_one_outcome(
    ctx: ServiceContext, total: str, booked: list[tuple[str, str]], event: str
) -> None:
    order = created_event(total)
    order_id = order.payload.order_id
    gateway = FakeGateway()
    gateway.hold()
    delivering = asyncio.create_task(deliver_order(ctx, order, gateway))
    await asyncio.wait_for(gateway.charging.wait(), timeout=SOON)
    charger = payments.Charger(ctx, gateway)

    # Left alone while fresh; taken for abandoned (older_than=0) it is charged a second time.
    assert await payments.recover(charger) == payments.Recovered(charged=0, refunded=0)
    recovering = asyncio.create_task(payments.recover(charger, older_than=NOW))
    await asyncio.sleep(0.3)
    gateway.answer.set()
    await asyncio.wait_for(asyncio.gather(delivering, recovering), timeout=SOON)

    assert gateway.charge_calls[str(order_id)] == 2
    assert gateway.kept(order_id) == (Decimal(total) if booked else 0)
    assert await ledger(ctx, order_id) == booked
    # Both chargers had an answer; the status guard let one of them record it.
    assert names(await announced(ctx, order_id)) == [event]


async def test_a_crash_before_the_refund_is_recorded_is_recovered(ctx: ServiceContext) -> None:
    order = created_event("57.00")
    order_id = order.payload.order_id
    gateway = FakeGateway()
    await deliver_order(ctx, order, gateway)
    cancellation = cancelled_event(order)
    gateway.die_after_refund = True
    with pytest.raises(ProcessDied):
        await deliver_cancellation(ctx, cancellation, gateway)
    assert await status(ctx, order_id) == "approved"
    assert gateway.kept(order_id) == 0  # returned, but not recorded

    gateway.die_after_refund = False
    charger = payments.Charger(ctx, gateway)
    await payments.recover(charger)  # the cancellation is too recent
    assert await status(ctx, order_id) == "approved"
    recovered = await payments.recover(charger, older_than=NOW)
    assert recovered.refunded >= 1

    assert await status(ctx, order_id) == "refunded"
    assert gateway.refund_calls[f"refund-{order_id}"] == 2  # asked again with the same key
    assert gateway.kept(order_id) == 0
    assert await ledger(ctx, order_id) == [("credit", "57.00"), ("debit", "57.00")]
    processed, refunded = await announced(ctx, order_id)
    assert names([processed, refunded]) == [
        "financial.payment.processed",
        "financial.payment.refunded",
    ]
    assert_caused_by(refunded, cancellation)

"""Financial's payment use cases against the real PostgreSQL, where deliveries of one order run
in separate transactions at the same time: a cancellation that arrives while the order's charge
is still with the gateway waits for it and then refunds — it never leaves money taken for a
cancelled order — and two deliveries of the same order charge once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlmodel import col, select

from generated.events.models import SalesOrderCreatedPayload
from services.financial.commands import payments
from services.financial.gateway import Charge, ChargeResult, Refund, SimulatedGateway
from services.financial.service import definition
from services.financial.tables import LedgerTransaction, OrderCancellation, Payment
from services.platform.core.contracts import Topology
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import InProcessBus, InProcessRouter
from services.platform.persistence.db import Database, prepare_database
from services.platform.persistence.redis import Keys, connect_redis
from services.platform.runtime.service import ServiceContext
from tests.support.orders import order_totalling

pytestmark = pytest.mark.integration


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


class HeldGateway:
    """The simulator, holding each charge until the test lets it answer."""

    def __init__(self) -> None:
        self.inner = SimulatedGateway()
        self.charging = asyncio.Event()
        self.answer = asyncio.Event()

    async def charge(self, charge: Charge) -> ChargeResult:
        self.charging.set()
        await self.answer.wait()
        return await self.inner.charge(charge)

    async def refund(self, refund: Refund) -> str:
        return await self.inner.refund(refund)


async def create(ctx: ServiceContext, order: SalesOrderCreatedPayload, gateway: Any) -> None:
    async with ctx.unit_of_work() as uow:
        await payments.create_and_charge(uow, order, gateway)
        await uow.commit()


async def cancel(ctx: ServiceContext, order_id: UUID, gateway: Any) -> None:
    async with ctx.unit_of_work() as uow:
        await payments.cancel_order(uow, order_id, "Customer asked to cancel", gateway)
        await uow.commit()


async def state(ctx: ServiceContext, order_id: UUID) -> tuple[str, list[str], bool]:
    """The payment's status, its ledger rows' types, and whether a cancellation tombstone was
    left behind."""
    async with ctx.database.session() as session:
        payment = (
            await session.scalars(select(Payment).where(col(Payment.order_id) == order_id))
        ).one()
        rows = await session.scalars(
            select(col(LedgerTransaction.type))
            .where(col(LedgerTransaction.order_id) == order_id)
            .order_by(col(LedgerTransaction.occurred_at))
        )
        tombstone = await session.get(OrderCancellation, order_id)
        return payment.status, list(rows), tombstone is not None


def order(total: str) -> SalesOrderCreatedPayload:
    return SalesOrderCreatedPayload.model_validate(order_totalling(total)["payload"])


async def test_a_cancellation_during_the_charge_waits_and_refunds(ctx: ServiceContext) -> None:
    placed = order("250.00")
    gateway = HeldGateway()
    charging = asyncio.create_task(create(ctx, placed, gateway))
    await asyncio.wait_for(gateway.charging.wait(), timeout=10)

    cancelling = asyncio.create_task(cancel(ctx, placed.order_id, gateway))
    await asyncio.sleep(0.3)
    assert not cancelling.done(), "the cancellation did not wait for the charge in flight"
    gateway.answer.set()
    await asyncio.wait_for(asyncio.gather(charging, cancelling), timeout=10)

    assert await state(ctx, placed.order_id) == ("refunded", ["credit", "debit"], False)


async def test_two_deliveries_of_one_order_at_once_charge_once(ctx: ServiceContext) -> None:
    placed = order("75.00")
    gateway = HeldGateway()
    first = asyncio.create_task(create(ctx, placed, gateway))
    await asyncio.wait_for(gateway.charging.wait(), timeout=10)
    second = asyncio.create_task(create(ctx, placed, gateway))
    await asyncio.sleep(0.3)
    gateway.answer.set()
    await asyncio.wait_for(asyncio.gather(first, second), timeout=10)

    assert await state(ctx, placed.order_id) == ("approved", ["credit"], False)
    assert gateway.inner.charge_calls == 1
    async with ctx.database.session() as session:
        amount = (
            await session.scalars(
                select(col(LedgerTransaction.amount)).where(
                    col(LedgerTransaction.order_id) == placed.order_id
                )
            )
        ).one()
    assert Decimal(amount) == Decimal("75.00")

"""The outbox relay against the real PostgreSQL and RabbitMQ: order, confirms, competing relays,
and a broker outage between commit and publish (`rabbitmqctl stop_app` / `start_app`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import aio_pika
import pytest
from pydantic import BaseModel
from sqlalchemy import delete

from services.platform.core.contracts import Binding, EventSpec, ExchangeSpec, Topology
from services.platform.core.settings import Settings
from services.platform.messaging.bus import PublishError, RabbitBus
from services.platform.persistence.db import Database
from services.platform.persistence.tables import OutboxMessage
from services.platform.persistence.uow import UnitOfWork
from services.platform.runtime.consumers import start_consumers
from services.platform.runtime.relay import OUTBOX_LAG, OUTBOX_PENDING, OutboxRelay
from services.platform.runtime.service import ServiceContext
from tests.platform.kit_service import DEFINITION as KIT_DEFINITION
from tests.platform.kit_service import KitEnvelope
from tests.support.contexts import emit, migrated_database, outbox_rows, service_context
from tests.support.events import event_spec, queue_spec
from tests.support.polling import eventually
from tests.support.processes import broker_stopped
from tests.support.strict_events import envelope_schema, object_schema

pytestmark = pytest.mark.integration

SERVICE = "relaydemo"
DEFINITION = dataclasses.replace(KIT_DEFINITION, name=SERVICE)


class Parcel(BaseModel):
    number: int


PARCEL_SCHEMA = object_schema(number={"type": "integer"})


PARCEL_SENT = event_spec("relaydemo.parcel.sent", Parcel)
QUEUE = queue_spec(
    "relaydemo.queue", [Binding("relaydemo.events", "relaydemo.#")], [PARCEL_SENT.name]
)
TOPOLOGY = Topology(
    (ExchangeSpec("relaydemo.events", "topic"), ExchangeSpec("dlx", "direct")), (QUEUE,)
)


@pytest.fixture(scope="module")
def settings(service_settings: Callable[[str], Settings]) -> Settings:
    return service_settings(SERVICE)


@pytest.fixture(scope="module")
async def database(settings: Settings) -> AsyncIterator[Database]:
    async with migrated_database(DEFINITION, settings) as database:
        yield database


@pytest.fixture
async def ctx(settings: Settings, database: Database) -> AsyncIterator[ServiceContext]:
    assert settings.amqp_url is not None
    bus = RabbitBus(settings.amqp_url, service=SERVICE, topology=TOPOLOGY, reconnect_interval=0.5)
    await bus.start()
    async with database.session() as session:  # each test starts with an empty outbox
        await session.execute(delete(OutboxMessage))
        await session.commit()
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await (await channel.declare_queue(QUEUE.name, passive=True)).purge()
    async with service_context(DEFINITION, settings, bus=bus, database=database) as ctx:
        yield ctx
    await bus.stop()


def parcels(numbers: range) -> list[tuple[EventSpec, BaseModel]]:
    return [(PARCEL_SENT, Parcel(number=number)) for number in numbers]


async def drain(settings: Settings, expected: int, within: float = 20) -> list[Any]:
    """Take `expected` messages off the queue (the ones the relay published)."""
    assert settings.amqp_url is not None
    taken: list[Any] = []
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        queue = await (await connection.channel()).declare_queue(QUEUE.name, passive=True)

        async def all_taken() -> bool:
            while (
                len(taken) < expected
                and (message := await queue.get(no_ack=True, fail=False)) is not None
            ):
                taken.append(message)
            return len(taken) >= expected

        await eventually(all_taken, within=within, every=0.05, what=f"{expected} messages")
        # Anything beyond the expected count would be a duplicate.
        await asyncio.sleep(0.2)
        extra = await queue.get(no_ack=True, fail=False)
    assert extra is None, f"unexpected extra message {extra.message_id if extra else ''}"
    return taken


def gauge(metric: Any) -> float:
    return float(metric.labels(SERVICE)._value.get())


async def test_relay_publishes_committed_rows_in_order_and_marks_them(
    ctx: ServiceContext, settings: Settings
) -> None:
    event_ids = await emit(ctx, parcels(range(5)))
    relay = OutboxRelay(ctx, topology=TOPOLOGY)

    assert await relay.relay_once() == 5
    assert await relay.relay_once() == 0

    rows = await outbox_rows(ctx)
    assert all(row.published_at is not None for row in rows)
    assert all(row.attempts == 0 for row in rows)
    messages = await drain(settings, 5)
    assert [message.message_id for message in messages] == event_ids
    first = messages[0]
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.content_type == "application/json"
    assert json.loads(first.body)["payload"] == {"number": 0}
    assert first.correlation_id == json.loads(first.body)["correlation_id"]
    assert first.headers["event_name"] == PARCEL_SENT.name
    assert gauge(OUTBOX_PENDING) == 0
    assert gauge(OUTBOX_LAG) == 0


async def test_competing_relays_publish_each_row_once(
    ctx: ServiceContext, settings: Settings, database: Database
) -> None:
    event_ids = await emit(ctx, parcels(range(60)))
    other = dataclasses.replace(ctx, outbox_signal=asyncio.Event())  # a second process
    relays = [
        OutboxRelay(ctx, batch_size=7, topology=TOPOLOGY),
        OutboxRelay(other, batch_size=7, topology=TOPOLOGY),
    ]

    async def relay_all(relay: OutboxRelay) -> int:
        total = 0
        while published := await relay.relay_once():
            total += published
        return total

    counts = await asyncio.gather(*(relay_all(relay) for relay in relays))

    assert sum(counts) == 60
    messages = await drain(settings, 60)
    assert sorted(message.message_id for message in messages) == sorted(event_ids)


async def test_rows_committed_while_rabbitmq_is_down_arrive_after_it_returns(
    ctx: ServiceContext, settings: Settings
) -> None:
    handled: list[int] = []

    async def on_relaydemo_parcel_sent(uow: UnitOfWork, event: KitEnvelope[Parcel]) -> None:
        assert isinstance(event.payload, Parcel)
        handled.append(event.payload.number)

    consumers = SimpleNamespace(on_relaydemo_parcel_sent=on_relaydemo_parcel_sent)
    ctx.definition = dataclasses.replace(DEFINITION, consumers=consumers)
    await start_consumers(
        ctx,
        topology=TOPOLOGY,
        events={PARCEL_SENT.name: PARCEL_SENT},
        envelopes={PARCEL_SENT.name: KitEnvelope[Parcel]},
        schemas={PARCEL_SENT.name: envelope_schema(PARCEL_SENT.name, PARCEL_SCHEMA)},
    )
    relay = OutboxRelay(ctx, poll_interval=0.2, max_backoff=1.0, topology=TOPOLOGY)
    task = asyncio.create_task(relay.run())
    try:
        await emit(ctx, parcels(range(1)))
        await eventually(lambda: handled == [0])

        async with broker_stopped():
            [event_id] = await emit(ctx, parcels(range(1, 2)))  # committed with its outbox row
            await eventually(lambda: _failed_attempts(ctx, event_id), within=20)
            [row] = [row for row in await outbox_rows(ctx) if str(row.event_id) == event_id]
            assert row.published_at is None
            assert row.last_error is not None

        # The relay retries, the robust connection comes back, the consumer gets it.
        await eventually(lambda: handled == [0, 1], within=60)
        await eventually(lambda: _all_published(ctx), within=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _failed_attempts(ctx: ServiceContext, event_id: str) -> bool:
    return any(str(row.event_id) == event_id and row.attempts > 0 for row in await outbox_rows(ctx))


async def _all_published(ctx: ServiceContext) -> bool:
    return all(row.published_at is not None for row in await outbox_rows(ctx))


async def test_a_publish_error_keeps_the_row_with_its_error_and_counts_it_pending(
    ctx: ServiceContext,
) -> None:
    lost = dataclasses.replace(PARCEL_SENT, exchange="missing.events")
    async with ctx.unit_of_work() as uow:
        uow.emit(lost, Parcel(number=1))
        uow.emit(PARCEL_SENT, Parcel(number=2))
        await uow.commit()

    with pytest.raises(PublishError):
        await OutboxRelay(ctx, topology=TOPOLOGY).relay_once()

    failed, behind = await outbox_rows(ctx)
    assert failed.published_at is None
    assert failed.attempts == 1
    assert failed.last_error is not None
    assert "missing.events" in failed.last_error
    assert behind.published_at is None  # kept in order behind the failing row
    assert gauge(OUTBOX_PENDING) == 2
    assert gauge(OUTBOX_LAG) > 0

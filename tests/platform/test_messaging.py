"""The messaging kit against the real RabbitMQ (this run's vhost) and PostgreSQL: topology,
publisher confirms, the consumer wrapper (validation, retries, dead letters, inbox dedupe) and
the dlq functions."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import aiormq.exceptions
import pytest
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlmodel import col

from generated.topology import TOPOLOGY as GENERATED_TOPOLOGY
from services.platform.core.contracts import Binding, ExchangeSpec, QueueSpec, Topology
from services.platform.core.settings import Settings
from services.platform.messaging import dlq
from services.platform.messaging.bus import (
    BrokerUnavailable,
    IncomingMessage,
    MessageBus,
    PublishError,
    RabbitBus,
    Settlement,
    Unroutable,
    create_bus,
)
from services.platform.persistence.db import Database
from services.platform.persistence.tables import InboxMessage, OutboxMessage
from services.platform.persistence.uow import UnitOfWork
from services.platform.runtime.consumers import CONSUMER_MESSAGES, DeadLetter, start_consumers
from services.platform.runtime.service import ServiceContext
from tests.platform.kit_service import DEFINITION as KIT_DEFINITION
from tests.platform.kit_service import KitEnvelope
from tests.support.contexts import migrated_database, service_context
from tests.support.events import envelope as event_envelope
from tests.support.events import event_spec, queue_spec
from tests.support.polling import eventually
from tests.support.processes import RABBITMQCTL
from tests.support.strict_events import envelope_schema, object_schema

pytestmark = pytest.mark.integration

SERVICE = "msgdemo"
DEFINITION = dataclasses.replace(KIT_DEFINITION, name=SERVICE)  # its tables, our name


class Thing(BaseModel):
    thing_id: UUID
    quantity: int = Field(ge=1)


THING_MADE = event_spec("msgdemo.thing.made", Thing)
EVENTS = {THING_MADE.name: THING_MADE}
ENVELOPES: dict[str, type[BaseModel]] = {THING_MADE.name: KitEnvelope[Thing]}
THING_SCHEMA = object_schema(
    thing_id={"type": "string", "format": "uuid"}, quantity={"type": "integer", "minimum": 1}
)
SCHEMAS = {THING_MADE.name: envelope_schema(THING_MADE.name, THING_SCHEMA)}


def _queue(name: str, pattern: str, **arguments: Any) -> QueueSpec:
    return queue_spec(name, [Binding("msgdemo.events", pattern)], [THING_MADE.name], **arguments)


TOPOLOGY = Topology(
    exchanges=(ExchangeSpec("msgdemo.events", "topic"), ExchangeSpec("dlx", "direct")),
    queues=(
        _queue(
            "msgdemo.queue",
            "msgdemo.thing.*",
            **{"x-queue-type": "quorum"},
            **{"x-delivery-limit": 5},
        ),
        _queue(
            "msgprio.queue",
            "msgdemo.#",
            **{"x-queue-type": "classic", "x-max-priority": 10, "x-message-ttl": 600_000},
        ),
    ),
)
QUEUE = TOPOLOGY.queues[0]


def rabbitmqctl_json(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [*RABBITMQCTL, "-q", *args, "--formatter", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def declared_queues(vhost: str) -> dict[str, dict[str, Any]]:
    rows = rabbitmqctl_json("list_queues", "-p", vhost, "name", "arguments", "durable")
    return {
        row["name"]: {
            "durable": row["durable"],
            "arguments": {key: value for key, _type, value in row["arguments"]},
        }
        for row in rows
    }


def declared_bindings(vhost: str) -> set[tuple[str, str, str]]:
    rows = rabbitmqctl_json(
        "list_bindings", "-p", vhost, "source_name", "destination_name", "routing_key"
    )
    return {(row["source_name"], row["destination_name"], row["routing_key"]) for row in rows}


def assert_declared(vhost: str, topology: Topology) -> None:
    queues = declared_queues(vhost)
    bindings = declared_bindings(vhost)
    exchanges = {
        row["name"]: row
        for row in rabbitmqctl_json("list_exchanges", "-p", vhost, "name", "type", "durable")
    }
    for exchange in topology.all_exchanges():
        assert exchanges[exchange.name]["type"] == exchange.type
        assert exchanges[exchange.name]["durable"] is True
    for queue in topology.queues:
        assert queues[queue.name] == {"durable": True, "arguments": dict(queue.arguments)}
        assert queues[queue.dead_letter_queue] == {
            "durable": True,
            "arguments": topology.dead_letter_queue_arguments(queue),
        }
        for binding in queue.bindings:
            assert (binding.exchange, queue.name, binding.routing_key) in bindings
        assert (
            queue.dead_letter_exchange,
            queue.dead_letter_queue,
            queue.dead_letter_routing_key,
        ) in bindings


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def settings(service_settings: Callable[[str], Settings]) -> Settings:
    return service_settings(SERVICE)


@pytest.fixture(scope="module")
async def database(settings: Settings) -> AsyncIterator[Database]:
    async with migrated_database(DEFINITION, settings) as database:
        yield database


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[RabbitBus]:
    assert settings.amqp_url is not None
    bus = RabbitBus(settings.amqp_url, service=SERVICE, topology=TOPOLOGY)
    await bus.start()
    # Each test starts from empty queues (they are shared by the tests of this module).
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in TOPOLOGY.queues:
            for name in (queue.name, queue.dead_letter_queue):
                await (await channel.declare_queue(name, passive=True)).purge()
    yield bus
    await bus.stop()


@pytest.fixture
async def ctx(
    settings: Settings, database: Database, bus: RabbitBus
) -> AsyncIterator[ServiceContext]:
    async with service_context(DEFINITION, settings, bus=bus, database=database) as ctx:
        yield ctx


@pytest.fixture
async def raw_channel(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain aio-pika channel, to look at messages as RabbitMQ holds them."""
    assert settings.amqp_url is not None
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        yield await connection.channel()


async def next_message(
    channel: aio_pika.abc.AbstractChannel, queue: str, within: float = 10
) -> aio_pika.abc.AbstractIncomingMessage:
    declared = await channel.declare_queue(queue, passive=True)
    return await eventually(
        lambda: declared.get(no_ack=True, fail=False), within=within, what=f"a message in {queue}"
    )


def envelope(**changes: Any) -> dict[str, Any]:
    thing = {"thing_id": str(uuid4()), "quantity": 3}
    return event_envelope(THING_MADE.name, thing, **changes)


async def send(
    bus: MessageBus, event: dict[str, Any] | bytes, message_id: str | None = None
) -> None:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    message_id = message_id or (event["event_id"] if isinstance(event, dict) else str(uuid4()))
    await bus.publish(
        THING_MADE.exchange,
        THING_MADE.routing_key,
        body,
        message_id=message_id,
        headers={"origin": "test"},
    )


ThingMade = KitEnvelope[Thing]
Handler = Callable[[UnitOfWork, ThingMade], Awaitable[None]]


async def consume(ctx: ServiceContext, handler: Handler | Callable[..., Any]) -> None:
    consumers = SimpleNamespace(on_msgdemo_thing_made=handler)
    ctx.definition = dataclasses.replace(DEFINITION, consumers=consumers)
    await start_consumers(
        ctx, topology=TOPOLOGY, events=EVENTS, envelopes=ENVELOPES, schemas=SCHEMAS
    )


# ---------------------------------------------------------------- topology and publishing


async def test_topology_is_declared_with_exactly_the_queue_arguments(
    bus: RabbitBus, amqp_vhost: str
) -> None:
    assert_declared(amqp_vhost, TOPOLOGY)
    await bus.ping()


async def test_generated_topology_is_declared_with_its_arguments(
    settings: Settings, amqp_vhost: str
) -> None:
    bus = create_bus(settings, GENERATED_TOPOLOGY)
    await bus.start()
    try:
        assert_declared(amqp_vhost, GENERATED_TOPOLOGY)
    finally:
        await bus.stop()


async def test_start_fails_cleanly_when_a_queue_exists_with_other_arguments(
    bus: RabbitBus, settings: Settings
) -> None:
    assert settings.amqp_url is not None
    changed = dataclasses.replace(QUEUE, arguments={**QUEUE.arguments, "x-delivery-limit": 6})
    other = RabbitBus(
        settings.amqp_url, service=SERVICE, topology=Topology(TOPOLOGY.exchanges, (changed,))
    )
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-delivery-limit"):
        await other.start()
    with pytest.raises(BrokerUnavailable):
        await other.ping()  # stopped again, not left half-started


async def test_publish_is_confirmed_persistent_json_with_its_properties(
    bus: RabbitBus, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    await bus.publish(
        "msgdemo.events",
        "msgdemo.thing.made",
        b'{"x": 1}',
        message_id="id-1",
        headers={"event_name": "msgdemo.thing.made"},
        priority=7,
        expiration_ms=60_000,
        correlation_id="corr-1",
    )
    message = await next_message(raw_channel, "msgprio.queue")
    assert message.body == b'{"x": 1}'
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert (message.message_id, message.correlation_id, message.priority) == ("id-1", "corr-1", 7)
    assert message.expiration == 60.0
    assert message.headers == {"event_name": "msgdemo.thing.made"}
    assert message.routing_key == "msgdemo.thing.made"


async def test_transient_publish_and_publish_errors(
    bus: RabbitBus, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    await bus.publish("msgdemo.events", "msgdemo.other", b"{}", persistent=False)
    message = await next_message(raw_channel, "msgprio.queue")
    assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT

    with pytest.raises(Unroutable):
        await bus.publish("dlx", "nobody.dlq", b"{}")
    with pytest.raises(PublishError):
        await bus.publish("missing.events", "msgdemo.thing.made", b"{}")
    # The channel closed by the missing exchange is reopened: publishing works again.
    await eventually(lambda: _publishes(bus))


async def _publishes(bus: RabbitBus) -> bool:
    try:
        await bus.publish("msgdemo.events", "msgdemo.thing.made", b"{}")
    except PublishError:
        return False
    return True


async def test_a_stopped_bus_refuses_to_publish(settings: Settings) -> None:
    assert settings.amqp_url is not None
    bus = RabbitBus(settings.amqp_url, service=SERVICE, topology=TOPOLOGY)
    with pytest.raises(BrokerUnavailable):
        await bus.publish("msgdemo.events", "msgdemo.thing.made", b"{}")
    with pytest.raises(BrokerUnavailable):
        await bus.ping()


async def test_subscriber_receives_and_acks_after_returning(
    bus: RabbitBus, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    received: list[IncomingMessage] = []

    async def handler(message: IncomingMessage) -> None:
        received.append(message)

    await bus.subscribe(QUEUE, handler)
    await bus.publish(
        "msgdemo.events", "msgdemo.thing.made", b"hello", message_id="m-1", headers={"a": "b"}
    )
    await eventually(lambda: len(received) == 1)
    message = received[0]
    assert (message.body, message.message_id, message.headers) == (b"hello", "m-1", {"a": "b"})
    assert (message.exchange, message.routing_key, message.queue) == (
        "msgdemo.events",
        "msgdemo.thing.made",
        "msgdemo.queue",
    )
    assert not message.redelivered
    await eventually(lambda: message.settlement is Settlement.ACK)
    await bus.stop()  # an unacknowledged message would now be back in the queue
    assert await anything_in(raw_channel, "msgdemo.queue") is None


async def test_a_raising_subscriber_gets_the_message_again(bus: RabbitBus) -> None:
    deliveries: list[bool] = []

    async def handler(message: IncomingMessage) -> None:
        deliveries.append(message.redelivered)
        if len(deliveries) == 1:
            raise RuntimeError("first delivery fails")

    await bus.subscribe(QUEUE, handler)
    await bus.publish("msgdemo.events", "msgdemo.thing.made", b"again")
    await eventually(lambda: deliveries == [False, True])


async def anything_in(
    channel: aio_pika.abc.AbstractChannel, queue: str
) -> aio_pika.abc.AbstractIncomingMessage | None:
    declared = await channel.declare_queue(queue, passive=True)
    return await declared.get(no_ack=True, fail=False)


# ---------------------------------------------------------------- the consumer wrapper


async def test_a_schema_invalid_message_is_dead_lettered_at_once(
    ctx: ServiceContext, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    calls = 0

    async def handle(*_: Any) -> None:
        nonlocal calls
        calls += 1

    await consume(ctx, handle)
    event = envelope(payload={"thing_id": str(uuid4()), "quantity": 0})
    await send(ctx.bus, event)

    dead = await next_message(raw_channel, "msgdemo.dlq")
    assert calls == 0
    assert dead.body == json.dumps(event).encode()
    assert dead.message_id == event["event_id"]
    assert dead.headers["x-erp-error"] == "InvalidMessage"
    reason = str(dead.headers["x-erp-error-reason"])
    assert reason == "schema: payload.quantity: 0 is less than the minimum of 1"
    assert dead.headers["x-erp-attempts"] == 0
    assert dead.headers["x-erp-original-exchange"] == "msgdemo.events"
    assert dead.headers["x-erp-original-routing-key"] == "msgdemo.thing.made"
    assert dead.headers["origin"] == "test"
    assert dead.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_invalid_json_is_dead_lettered_at_once(
    ctx: ServiceContext, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    async def handle(*_: Any) -> None:
        raise AssertionError("never called")

    await consume(ctx, handle)
    await send(ctx.bus, b"{not json", message_id="broken-1")
    dead = await next_message(raw_channel, "msgdemo.dlq")
    assert dead.message_id == "broken-1"
    assert str(dead.headers["x-erp-error-reason"]).startswith("body is not JSON")


async def test_a_failing_handler_is_retried_then_dead_lettered(
    ctx: ServiceContext, raw_channel: aio_pika.abc.AbstractChannel, database: Database
) -> None:
    attempts: list[float] = []

    async def handle(uow: UnitOfWork, event: ThingMade) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise RuntimeError("the ledger is closed")

    await consume(ctx, handle)
    event = envelope()
    await send(ctx.bus, event)

    dead = await next_message(raw_channel, "msgdemo.dlq")
    delays = ctx.settings.retry_delays
    assert len(attempts) == len(delays) + 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= delay * 0.9 for gap, delay in zip(gaps, delays, strict=True))
    assert dead.headers["x-erp-error"] == "RuntimeError"
    assert dead.headers["x-erp-error-reason"] == "the ledger is closed"
    assert dead.headers["x-erp-attempts"] == len(delays) + 1
    assert str(dead.headers["x-erp-failed-at"]).endswith("Z")
    async with database.session() as session:
        handled = (
            select(func.count())
            .select_from(InboxMessage)
            .where(col(InboxMessage.event_id) == UUID(event["event_id"]))
        )
        assert (await session.execute(handled)).scalar_one() == 0  # rolled back each time


async def test_a_value_postgresql_refuses_is_dead_lettered_at_once_without_the_sql(
    ctx: ServiceContext, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    attempts = 0

    async def handle(uow: UnitOfWork, event: ThingMade) -> None:
        nonlocal attempts
        attempts += 1
        # An int4 column can never hold it: every retry would fail the same way.
        await uow.session.execute(
            text("SELECT CAST(:secret AS integer) + 1"), {"secret": 2**31 - 1}
        )

    await consume(ctx, handle)
    await send(ctx.bus, envelope())
    dead = await next_message(raw_channel, "msgdemo.dlq")
    assert attempts == 1
    assert dead.headers["x-erp-attempts"] == 1
    assert dead.headers["x-erp-error"] == "DataError"
    assert dead.headers["x-erp-error-reason"] == (
        "database: data_exception (SQLSTATE 22003 numeric_value_out_of_range)"
    )


async def test_dead_letter_raised_by_a_handler_skips_retries(
    ctx: ServiceContext, raw_channel: aio_pika.abc.AbstractChannel
) -> None:
    attempts = 0

    async def handle(*_: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise DeadLetter("illegal transition: cancelled -> confirmed")

    await consume(ctx, handle)
    await send(ctx.bus, envelope())
    dead = await next_message(raw_channel, "msgdemo.dlq")
    assert attempts == 1
    assert dead.headers["x-erp-error"] == "DeadLetter"
    assert dead.headers["x-erp-error-reason"] == "illegal transition: cancelled -> confirmed"


async def test_a_duplicate_event_is_handled_once(ctx: ServiceContext, database: Database) -> None:
    calls: list[str] = []

    async def handle(uow: UnitOfWork, event: ThingMade) -> None:
        calls.append(str(event.event_id))
        await asyncio.sleep(0.2)  # the copies overlap: the inbox row lock decides

    def outcomes() -> tuple[float, float]:
        return counted("handled"), counted("duplicate")

    await consume(ctx, handle)
    event = envelope()
    handled, duplicates = outcomes()
    await asyncio.gather(*(send(ctx.bus, event) for _ in range(3)))  # concurrent copies
    await eventually(lambda: sum(outcomes()) == handled + duplicates + 3)
    await send(ctx.bus, event)  # and once more, later
    await eventually(lambda: sum(outcomes()) == handled + duplicates + 4)

    assert outcomes() == (handled + 1, duplicates + 3)
    async with database.session() as session:
        rows = (
            select(func.count())
            .select_from(InboxMessage)
            .where(
                col(InboxMessage.consumer) == SERVICE,
                col(InboxMessage.event_id) == UUID(event["event_id"]),
            )
        )
        assert (await session.execute(rows)).scalar_one() == 1
    assert 1 <= len(calls) <= 3  # overlapping copies may start; only one commits
    assert await ctx.bus.depth("msgdemo.dlq") == 0


def counted(outcome: str) -> float:
    return float(CONSUMER_MESSAGES.labels(SERVICE, THING_MADE.name, outcome)._value.get())


async def test_an_emitted_event_continues_the_conversation(
    ctx: ServiceContext, database: Database
) -> None:
    async def handle(uow: UnitOfWork, event: ThingMade) -> None:
        if event.causation_id is None:  # the test's event, not the one emitted here
            uow.emit(THING_MADE, event.payload)

    await consume(ctx, handle)
    event = envelope()
    await send(ctx.bus, event)

    async def emitted() -> list[dict[str, Any]]:
        async with database.session() as session:
            rows = await session.execute(
                select(col(OutboxMessage.body)).where(
                    col(OutboxMessage.body).contains(f'"causation_id":"{event["event_id"]}"')
                )
            )
            return [json.loads(body) for (body,) in rows]

    await eventually(emitted)
    [caused] = await emitted()
    assert caused["causation_id"] == event["event_id"]
    assert caused["correlation_id"] == event["correlation_id"]


# ---------------------------------------------------------------- dlq list / show / replay


async def test_dlq_list_show_replay_round_trip(ctx: ServiceContext, amqp_vhost: str) -> None:
    refuse = True
    handled: list[str] = []

    async def handle(uow: UnitOfWork, event: ThingMade) -> None:
        if refuse:
            raise DeadLetter("not now")
        handled.append(str(event.event_id))

    await consume(ctx, handle)
    events = [envelope() for _ in range(3)]
    for event in events:
        await send(ctx.bus, event)
    await eventually(lambda: _depth_is(ctx, "msgdemo.dlq", 3))

    listed = await dlq.peek(ctx.bus, "msgdemo.dlq")
    # Handlers run concurrently (prefetch) and a quorum queue does not keep the order of
    # requeued messages: compare as sets.
    assert sorted(str(letter.message_id) for letter in listed) == sorted(
        e["event_id"] for e in events
    )
    assert {letter.reason for letter in listed} == {"not now"}
    again = await dlq.peek(ctx.bus, "msgdemo.dlq", limit=2)
    assert len({letter.message_id for letter in again}) == 2
    await eventually(lambda: _depth_is(ctx, "msgdemo.dlq", 3))  # listing took nothing away

    shown = await dlq.find(ctx.bus, "msgdemo.dlq", events[2]["event_id"])
    assert shown is not None
    details = shown.to_dict()
    assert details["body"] == events[2]
    assert (details["original_exchange"], details["original_routing_key"]) == (
        "msgdemo.events",
        "msgdemo.thing.made",
    )
    assert await dlq.find(ctx.bus, "msgdemo.dlq", "no-such-id") is None

    refuse = False
    assert await dlq.replay_from(ctx.bus, "msgdemo.dlq", events[2]["event_id"]) == 1
    await eventually(lambda: handled == [events[2]["event_id"]])
    remaining = await dlq.peek(ctx.bus, "msgdemo.dlq")
    assert sorted(str(letter.message_id) for letter in remaining) == sorted(
        event["event_id"] for event in events[:2]
    )

    assert await dlq.replay_from(ctx.bus, "msgdemo.dlq", dlq.ALL) == 2
    await eventually(lambda: sorted(handled) == sorted(e["event_id"] for e in events))
    await eventually(lambda: _depth_is(ctx, "msgdemo.dlq", 0))


async def _depth_is(ctx: ServiceContext, queue: str, expected: int) -> bool:
    return await ctx.bus.depth(queue) == expected


async def test_dlq_functions_by_service_name(settings: Settings, bus: RabbitBus) -> None:
    """`erp dlq` entry points: the service's DLQ from the generated topology."""
    queue = GENERATED_TOPOLOGY.queues[0]
    service_settings = dataclasses.replace(settings, service=queue.service)
    message_id = str(uuid4())
    await create_and_start(service_settings)
    # A dead letter whose origin is this module's exchange, so replaying it lands in our queue.
    await bus.publish(
        queue.dead_letter_exchange,
        queue.dead_letter_routing_key,
        json.dumps(envelope(event_id=message_id)).encode(),
        message_id=message_id,
        headers={
            "x-erp-error": "RuntimeError",
            "x-erp-error-reason": "boom",
            "x-erp-attempts": 4,
            "x-erp-original-exchange": "msgdemo.events",
            "x-erp-original-routing-key": "msgdemo.thing.made",
        },
    )

    listed = await dlq.list_dead_letters(
        service_settings, GENERATED_TOPOLOGY, queue.service, limit=1000
    )
    assert message_id in [letter.message_id for letter in listed]
    shown = await dlq.show(service_settings, GENERATED_TOPOLOGY, queue.service, message_id)
    assert shown is not None
    assert (shown.error, shown.reason, shown.attempts) == ("RuntimeError", "boom", 4)
    assert await dlq.show(service_settings, GENERATED_TOPOLOGY, queue.service, "no-such-id") is None

    assert await dlq.replay(service_settings, GENERATED_TOPOLOGY, queue.service, message_id) == 1
    replayed = await bus.get("msgdemo.queue")
    assert replayed is not None
    await replayed.ack()
    assert replayed.message_id == message_id
    assert replayed.headers["x-erp-replays"] == 1
    assert "x-erp-error" not in replayed.headers
    assert await dlq.show(service_settings, GENERATED_TOPOLOGY, queue.service, message_id) is None


async def create_and_start(settings: Settings) -> None:
    """Declare the generated topology in this vhost (what the service does when it starts)."""
    bus = create_bus(settings, GENERATED_TOPOLOGY)
    await bus.start()
    await bus.stop()

"""The embedded broker and the messaging kit on it: topic matching, routing, settlement,
dead-lettering, the consumer wrapper, the outbox relay and the dlq functions (SQLite, no
servers). The same behaviour against RabbitMQ and PostgreSQL is in test_messaging.py and
test_outbox_relay.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID, uuid4

import fakeredis
import psycopg
import pytest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from generated.topology import TOPOLOGY as GENERATED_TOPOLOGY
from services.platform.core import scope as requestctx
from services.platform.core.contracts import (
    Binding,
    EventSpec,
    ExchangeSpec,
    QueueSpec,
    Topology,
    binding_matches,
    topic_matches,
)
from services.platform.http.validation import CompiledSchema
from services.platform.messaging import dlq
from services.platform.messaging.bus import (
    IncomingMessage,
    InProcessBus,
    InProcessRouter,
    PublishError,
    RabbitBus,
    Settlement,
    Unroutable,
    create_bus,
)
from services.platform.persistence.tables import OutboxMessage, kit_metadata
from services.platform.persistence.uow import UnitOfWork
from services.platform.runtime import jobs
from services.platform.runtime.consumers import (
    CONSUMER_MESSAGES,
    DeadLetter,
    MessageConsumer,
    start_consumers,
)
from services.platform.runtime.relay import OUTBOX_PUBLISHED, OutboxRelay
from services.platform.runtime.service import ServiceContext, ServiceDefinition
from tests.support.contexts import emit, outbox_rows, service_context
from tests.support.embedded import embedded_settings
from tests.support.events import envelope as event_envelope
from tests.support.events import event_spec, queue_spec
from tests.support.polling import eventually
from tests.support.strict_events import envelope_schema, object_schema

SERVICE = "unitdemo"


class Thing(BaseModel):
    thing_id: UUID
    quantity: int = Field(ge=1)


THING_MADE = event_spec("unitdemo.thing.made", Thing)
THING_LOST = event_spec("unitdemo.thing.lost", Thing)
EVENTS = {spec.name: spec for spec in (THING_MADE, THING_LOST)}


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str
    user_id: UUID | None = None
    trace_id: str | None = None


class ThingEnvelope(BaseModel):
    """Stands for a generated envelope model: the whole message, nothing else allowed."""

    model_config = ConfigDict(extra="forbid")

    event_id: UUID
    event_name: str
    event_version: str
    occurred_at: datetime
    correlation_id: UUID
    causation_id: UUID | None = None
    payload: Thing
    metadata: Metadata


ENVELOPES: dict[str, type[BaseModel]] = {name: ThingEnvelope for name in EVENTS}
THING_SCHEMA = object_schema(
    thing_id={"type": "string", "format": "uuid"}, quantity={"type": "integer", "minimum": 1}
)
SCHEMAS = {name: envelope_schema(name, THING_SCHEMA) for name in EVENTS}


def unitdemo_queue(
    name: str = "unitdemo.queue",
    bindings: tuple[Binding, ...] = (Binding("unitdemo.events", "unitdemo.thing.*"),),
    **arguments: Any,
) -> QueueSpec:
    return queue_spec(name, bindings, EVENTS, **arguments)


TOPOLOGY = Topology(
    exchanges=(
        ExchangeSpec("unitdemo.events", "topic"),
        ExchangeSpec("other.events", "topic"),
        ExchangeSpec("dlx", "direct"),
    ),
    queues=(
        unitdemo_queue(),
        unitdemo_queue(
            "watcher.queue",
            (Binding("unitdemo.events", "#"), Binding("other.events", "other.#")),
            **{"x-delivery-limit": 2},
        ),
        unitdemo_queue(
            "urgent.queue",
            (Binding("other.events", "other.urgent.*"),),
            **{"x-queue-type": "classic", "x-max-priority": 10},
        ),
    ),
)


@pytest.mark.parametrize(
    ("pattern", "routing_key", "expected"),
    [
        ("sales.order.created", "sales.order.created", True),
        ("sales.order.created", "sales.order.cancelled", False),
        ("sales.order.*", "sales.order.created", True),
        ("sales.*", "sales.order.created", False),
        ("*.order.*", "sales.order.created", True),
        ("sales.#", "sales", True),
        ("sales.#", "sales.order.created", True),
        ("#", "inventory.stock.reserved", True),
        ("#.created", "sales.order.created", True),
        ("#.created", "created", True),
        ("sales.#.created", "sales.created", True),
        ("sales.#.created", "sales.a.b.created", True),
        ("sales.#.created", "sales.a.b.cancelled", False),
        ("sales.*.#", "sales", False),
        ("sales.*.#", "sales.order", True),
        ("inventory.product.*", "inventory.product", False),
        ("inventory.product.*", "inventory.product.created.v2", False),
    ],
)
def test_topic_matching(pattern: str, routing_key: str, expected: bool) -> None:
    assert topic_matches(pattern, routing_key) is expected


def test_direct_and_fanout_matching() -> None:
    assert binding_matches("direct", "sales.dlq", "sales.dlq")
    assert not binding_matches("direct", "sales.*", "sales.dlq")
    assert binding_matches("fanout", "", "anything")


def test_topology_knows_which_routing_keys_have_a_consumer() -> None:
    assert TOPOLOGY.is_routed("unitdemo.events", "unitdemo.thing.made")
    assert TOPOLOGY.is_routed("other.events", "other.x")
    assert TOPOLOGY.is_routed("dlx", "watcher.dlq")
    assert not TOPOLOGY.is_routed("dlx", "nobody.dlq")
    assert not TOPOLOGY.is_routed("elsewhere.events", "other.x")
    assert [queue.name for queue in TOPOLOGY.queues_for("watcher")] == ["watcher.queue"]


def test_create_bus_picks_the_transport_from_the_amqp_url(tmp_path: Path) -> None:
    embedded = embedded_settings(SERVICE, tmp_path)
    first = create_bus(embedded, TOPOLOGY)
    second = create_bus(dataclasses.replace(embedded, service="x"), TOPOLOGY)
    assert isinstance(first, InProcessBus)
    assert isinstance(second, InProcessBus)
    assert first.router is second.router  # one broker for every service of the process
    rabbit = create_bus(
        dataclasses.replace(embedded, amqp_url="amqp://guest:guest@127.0.0.1:5672/"),
        topology=TOPOLOGY,
    )
    assert isinstance(rabbit, RabbitBus)


# ------------------------------------------------------------------ the router


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    handle = InProcessBus(InProcessRouter(TOPOLOGY), service=SERVICE)
    await handle.start()
    yield handle
    await handle.stop()


async def publish(
    bus: InProcessBus, exchange: str, routing_key: str, body: bytes, **kw: Any
) -> None:
    await bus.publish(exchange, routing_key, body, **kw)


async def test_publish_routes_a_copy_to_every_bound_queue(bus: InProcessBus) -> None:
    await publish(bus, "unitdemo.events", "unitdemo.thing.made", b"{}", message_id="m1")
    await publish(bus, "unitdemo.events", "unitdemo.other", b"{}", message_id="m2")

    assert await bus.depth("unitdemo.queue") == 1
    assert await bus.depth("watcher.queue") == 2  # "#" takes both
    assert await bus.depth("urgent.queue") == 0


async def test_unroutable_and_unknown_exchange_raise(bus: InProcessBus) -> None:
    with pytest.raises(Unroutable):
        await publish(bus, "other.events", "nobody.listens", b"{}")
    with pytest.raises(PublishError):
        await publish(bus, "missing.events", "unitdemo.thing.made", b"{}")


async def test_a_queue_bound_twice_gets_one_copy(bus: InProcessBus) -> None:
    router = InProcessRouter(
        Topology(
            TOPOLOGY.exchanges,
            (
                unitdemo_queue(
                    bindings=(
                        Binding("unitdemo.events", "#"),
                        Binding("unitdemo.events", "*.thing.*"),
                    )
                ),
            ),
        )
    )
    assert len(router.route("unitdemo.events", "unitdemo.thing.made")) == 1


async def test_handler_gets_the_message_and_returning_acks(bus: InProcessBus) -> None:
    received: list[IncomingMessage] = []

    async def handler(message: IncomingMessage) -> None:
        received.append(message)

    await bus.subscribe(TOPOLOGY.queues[0], handler)
    await publish(
        bus,
        "unitdemo.events",
        "unitdemo.thing.made",
        b'{"a": 1}',
        message_id="m1",
        headers={"h": "v"},
        correlation_id="c1",
    )
    await eventually(lambda: len(received) == 1)

    message = received[0]
    assert (message.body, message.message_id, message.correlation_id) == (b'{"a": 1}', "m1", "c1")
    assert (message.exchange, message.routing_key) == ("unitdemo.events", "unitdemo.thing.made")
    assert message.headers == {"h": "v"}
    assert message.queue == "unitdemo.queue"
    assert not message.redelivered
    await eventually(lambda: not bus.router.queue("unitdemo.queue").messages)


async def test_a_raising_handler_gets_the_message_again_then_the_delivery_limit_dead_letters(
    bus: InProcessBus,
) -> None:
    deliveries: list[bool] = []

    async def failing(message: IncomingMessage) -> None:
        deliveries.append(message.redelivered)
        raise RuntimeError("boom")

    await bus.subscribe(TOPOLOGY.queues[1], failing)  # x-delivery-limit 2
    await publish(bus, "other.events", "other.thing", b"{}", message_id="m1")
    await eventually(lambda: len(bus.router.queue("watcher.dlq").messages) == 1)

    assert deliveries == [False, True, True]  # first delivery + 2 redeliveries
    dead = bus.router.queue("watcher.dlq").messages[0]
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"
    assert dead.headers["x-death"][0]["routing-keys"] == ["other.thing"]
    assert not bus.router.queue("watcher.queue").messages


async def test_reject_dead_letters_through_the_queue_arguments(bus: InProcessBus) -> None:
    async def rejecting(message: IncomingMessage) -> None:
        await message.reject()

    await bus.subscribe(TOPOLOGY.queues[0], rejecting)
    await publish(bus, "unitdemo.events", "unitdemo.thing.made", b"{}", message_id="m1")
    await eventually(lambda: len(bus.router.queue("unitdemo.dlq").messages) == 1)
    assert (
        bus.router.queue("unitdemo.dlq").messages[0].headers["x-death"][0]["reason"] == "rejected"
    )


async def test_priority_queue_delivers_higher_priorities_first(bus: InProcessBus) -> None:
    for priority, name in [(1, "low"), (9, "high"), (None, "none"), (9, "high2"), (5, "mid")]:
        await publish(bus, "other.events", "other.urgent.x", name.encode(), priority=priority)
    taken = []
    while (message := await bus.get("urgent.queue")) is not None:
        taken.append(message.body.decode())
        await message.ack()
    assert taken == ["high", "high2", "mid", "low", "none"]


async def test_get_holds_messages_until_settled_and_requeue_keeps_the_order(
    bus: InProcessBus,
) -> None:
    for number in range(3):
        await publish(bus, "unitdemo.events", "unitdemo.thing.made", b"%d" % number)
    first, second = await bus.get("unitdemo.queue"), await bus.get("unitdemo.queue")
    assert first is not None
    assert second is not None
    assert await bus.depth("unitdemo.queue") == 1
    await second.requeue()
    await first.requeue()
    with pytest.raises(RuntimeError, match="already settled"):
        await first.ack()
    bodies = [m.body for m in bus.router.queue("unitdemo.queue").messages]
    assert bodies == [b"0", b"1", b"2"]


async def test_messages_wait_for_a_late_subscriber_and_stop_ends_delivery(
    bus: InProcessBus,
) -> None:
    await publish(bus, "unitdemo.events", "unitdemo.thing.made", b"early")
    received: list[bytes] = []

    async def handler(message: IncomingMessage) -> None:
        received.append(message.body)

    await bus.subscribe(TOPOLOGY.queues[0], handler)
    await eventually(lambda: received == [b"early"])
    await bus.stop()
    await bus.start()  # started again, but without subscribers
    await publish(bus, "unitdemo.events", "unitdemo.thing.made", b"late")
    await asyncio.sleep(0.05)
    assert received == [b"early"]


# ------------------------------------------------------------------ consumers, relay, dlq


@pytest.fixture
async def ctx(tmp_path: Path, bus: InProcessBus) -> AsyncIterator[ServiceContext]:
    settings = embedded_settings(SERVICE, tmp_path)
    definition = ServiceDefinition(
        name=SERVICE,
        default_port=8099,
        handlers="tests.platform.test_inprocess_bus",
        operations={},
        metadata=kit_metadata,
        migrations=tmp_path,  # tables are created below instead
    )
    async with service_context(
        definition, settings, bus=bus, redis=fakeredis.FakeAsyncRedis()
    ) as ctx:
        async with ctx.database.engine.begin() as connection:
            await connection.run_sync(kit_metadata.create_all)
        yield ctx


Handler = Callable[[UnitOfWork, ThingEnvelope], Awaitable[None]]


async def consume(ctx: ServiceContext, on_made: Handler | Callable[..., Any]) -> ServiceContext:
    """Consume with a consumers object that handles `unitdemo.thing.made` (not `.lost`)."""
    consumers = SimpleNamespace(on_unitdemo_thing_made=on_made)
    ctx.definition = dataclasses.replace(ctx.definition, consumers=consumers)
    await start_consumers(
        ctx, topology=TOPOLOGY, events=EVENTS, envelopes=ENVELOPES, schemas=SCHEMAS
    )
    return ctx


def envelope(spec: EventSpec = THING_MADE, **changes: Any) -> dict[str, Any]:
    thing = {"thing_id": str(uuid4()), "quantity": 2}
    return event_envelope(spec.name, thing, **changes)


async def send(
    ctx: ServiceContext, body: dict[str, Any] | bytes, routing_key: str = "unitdemo.thing.made"
) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    message_id = str(body.get("event_id", uuid4())) if isinstance(body, dict) else str(uuid4())
    await ctx.bus.publish(
        "unitdemo.events", routing_key, raw, message_id=message_id, headers={"origin": "test"}
    )
    return message_id


async def dead_letters(ctx: ServiceContext, count: int) -> list[dlq.DeadLetterMessage]:
    async def enough() -> bool:
        return await ctx.bus.depth("unitdemo.dlq") >= count

    await eventually(enough, what=f"{count} dead letters")
    return await dlq.peek(ctx.bus, "unitdemo.dlq")


def counted(event: str, outcome: str) -> float:
    value = CONSUMER_MESSAGES.labels(SERVICE, event, outcome)._value.get()
    return float(value)


async def test_consumer_handles_once_with_the_cause_in_the_request_context(
    ctx: ServiceContext,
) -> None:
    seen: list[tuple[ThingEnvelope, Any, Any]] = []

    async def handle(uow: UnitOfWork, event: ThingEnvelope) -> None:
        assert isinstance(event, ThingEnvelope)
        assert isinstance(event.payload, Thing)
        seen.append((event, requestctx.correlation_id.get(), requestctx.causation_id.get()))

    await consume(ctx, handle)
    event = envelope()
    before = counted(THING_MADE.name, "duplicate")
    await send(ctx, event)
    await send(ctx, event)  # redelivered: no effect
    await eventually(lambda: counted(THING_MADE.name, "duplicate") == before + 1)

    assert len(seen) == 1
    model, correlation, causation = seen[0]
    assert str(model.event_id) == event["event_id"]
    assert str(model.correlation_id) == event["correlation_id"]
    assert model.metadata.service == "unitdemo"
    assert (correlation, causation) == (event["correlation_id"], event["event_id"])
    assert model.payload.quantity == 2
    assert requestctx.correlation_id.get() is None  # reset after handling


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        ({"event_name": "unitdemo.thing.made"}, "; event_id: is required;"),
        (
            envelope(payload={"thing_id": "x", "quantity": 0}),
            "schema: payload.quantity: 0 is less than the minimum of 1; "
            "payload.thing_id: 'x' is not a 'uuid'",
        ),
        (
            envelope(event_name="unitdemo.thing.unknown"),
            "routing key: the body's event_name 'unitdemo.thing.unknown' is not the routing key "
            "'unitdemo.thing.made'",
        ),
        (envelope(event_version="2.0"), "version 2.0 is not supported"),
        (envelope(extra=1), "schema: extra: is not allowed"),
        (envelope(metadata={}), "schema: metadata.service: is required"),
    ],
)
async def test_invalid_messages_are_dead_lettered_at_once(
    ctx: ServiceContext, body: dict[str, Any] | bytes, reason: str
) -> None:
    calls = 0

    async def handle(*_: Any) -> None:
        nonlocal calls
        calls += 1

    await consume(ctx, handle)
    message_id = await send(ctx, body)
    [letter] = await dead_letters(ctx, 1)

    assert calls == 0
    assert letter.message_id == message_id
    assert letter.error == "InvalidMessage"
    assert letter.reason is not None
    assert reason in letter.reason
    assert letter.attempts == 0
    assert letter.headers["origin"] == "test"  # the original headers are kept
    assert letter.body == (body if isinstance(body, bytes) else json.dumps(body).encode())
    assert (letter.original_exchange, letter.original_routing_key) == (
        "unitdemo.events",
        "unitdemo.thing.made",
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"quantity": "5"}, "schema: payload.quantity: '5' is not of type 'integer'"),
        ({"quantity": 5.0}, "schema: payload.quantity: 5.0 is not of type 'integer'"),
        ({"quantity": True}, "schema: payload.quantity: True is not of type 'integer'"),
        ({"thing_id": 7}, "schema: payload.thing_id: 7 is not of type 'string'"),
    ],
)
async def test_types_are_never_coerced(
    ctx: ServiceContext, payload: dict[str, Any], reason: str
) -> None:
    # pydantic (lax) would read each of these as the declared type; the contract does not.
    calls = 0

    async def handle(*_: Any) -> None:
        nonlocal calls
        calls += 1

    await consume(ctx, handle)
    event = envelope()
    event["payload"] |= payload
    await send(ctx, event)
    [letter] = await dead_letters(ctx, 1)
    assert calls == 0
    assert (letter.error, letter.reason, letter.attempts) == ("InvalidMessage", reason, 0)


@pytest.mark.parametrize(
    ("body_event", "routing_key", "reason"),
    [
        # The body claims the event this service handles; the broker routed another one.
        (
            THING_MADE,
            "unitdemo.thing.lost",
            "routing key: the body's event_name 'unitdemo.thing.made' is not the routing key "
            "'unitdemo.thing.lost'",
        ),
        (THING_LOST, "unitdemo.thing.lost", "unitdemo has no handler for unitdemo.thing.lost"),
        (THING_MADE, "unitdemo.thing.forged", "routing key: unknown event 'unitdemo.thing.forged'"),
    ],
)
async def test_the_routing_key_names_the_event(
    ctx: ServiceContext, body_event: EventSpec, routing_key: str, reason: str
) -> None:
    calls = 0

    async def handle(*_: Any) -> None:
        nonlocal calls
        calls += 1

    await consume(ctx, handle)
    await send(ctx, envelope(body_event), routing_key=routing_key)
    [letter] = await dead_letters(ctx, 1)
    assert calls == 0
    assert (letter.error, letter.reason) == ("InvalidMessage", reason)
    assert letter.original_routing_key == routing_key


async def test_an_event_must_come_from_its_declared_producer(ctx: ServiceContext) -> None:
    calls = 0

    async def handle(*_: Any) -> None:
        nonlocal calls
        calls += 1

    await consume(ctx, handle)
    await send(ctx, envelope(service="notification"))
    [letter] = await dead_letters(ctx, 1)
    assert calls == 0
    assert letter.reason == (
        "producer: unitdemo.thing.made is published by unitdemo, not by 'notification' "
        "(metadata.service)"
    )


async def test_an_event_on_another_exchange_is_refused(ctx: ServiceContext) -> None:
    # No queue of TOPOLOGY binds unitdemo.* on other.events: hand the consumer such a delivery.
    calls = 0

    async def handle(*_: Any) -> None:
        nonlocal calls
        calls += 1

    settled: list[Settlement] = []

    async def settle(settlement: Settlement) -> None:
        settled.append(settlement)

    event = envelope()
    consumer = MessageConsumer(
        ctx,
        TOPOLOGY.queues[0],
        EVENTS,
        ENVELOPES,
        {THING_MADE.name: CompiledSchema(SCHEMAS[THING_MADE.name])},
        {THING_MADE.name: handle},
    )
    await consumer(
        IncomingMessage(
            body=json.dumps(event).encode(),
            headers={},
            message_id=event["event_id"],
            correlation_id=None,
            exchange="other.events",
            routing_key=THING_MADE.name,
            queue="unitdemo.queue",
            redelivered=False,
            settle=settle,
        )
    )
    [letter] = await dead_letters(ctx, 1)
    assert (calls, settled) == (0, [Settlement.ACK])
    assert letter.reason == (
        "routing key: unitdemo.thing.made is published on unitdemo.events, not on 'other.events'"
    )


def _database_error(wrapper: type[DBAPIError], driver_error: Exception) -> DBAPIError:
    """As SQLAlchemy raises it: the statement and its parameters in the text."""
    return wrapper("INSERT INTO ledger (secret) VALUES (%(secret)s)", {"secret": 1}, driver_error)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            _database_error(DataError, psycopg.errors.NumericValueOutOfRange("out of range")),
            "database: data_exception (SQLSTATE 22003 numeric_value_out_of_range)",
        ),
        (
            _database_error(IntegrityError, psycopg.errors.CheckViolation("check")),
            "database: integrity_constraint_violation (SQLSTATE 23514 check_violation)",
        ),
    ],
)
async def test_a_value_the_database_refuses_is_dead_lettered_at_once(
    ctx: ServiceContext, error: DBAPIError, reason: str
) -> None:
    attempts = 0

    async def handle(*_: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise error

    await consume(ctx, handle)
    await send(ctx, envelope())
    [letter] = await dead_letters(ctx, 1)
    assert attempts == 1  # it would fail again: no retry
    assert (letter.error, letter.reason, letter.attempts) == (type(error).__name__, reason, 1)


async def test_transient_database_errors_are_retried_and_their_sql_never_told(
    ctx: ServiceContext,
) -> None:
    attempts = 0

    async def handle(*_: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise _database_error(
            OperationalError, psycopg.errors.SerializationFailure("could not serialize")
        )

    await consume(ctx, handle)
    await send(ctx, envelope())
    [letter] = await dead_letters(ctx, 1)
    assert attempts == 4
    assert letter.reason == "database: transaction_rollback (SQLSTATE 40001 serialization_failure)"


async def test_a_failing_handler_is_retried_then_dead_lettered_without_effects(
    ctx: ServiceContext,
) -> None:
    attempts = 0

    async def handle(uow: UnitOfWork, event: ThingEnvelope) -> None:
        nonlocal attempts
        attempts += 1
        uow.emit(THING_LOST, event.payload)  # rolled back with the failure
        raise ValueError(f"attempt {attempts} failed")

    await consume(ctx, handle)
    event = envelope()
    await send(ctx, event)
    [letter] = await dead_letters(ctx, 1)

    assert attempts == 4  # the first attempt and one retry per delay (3)
    assert (letter.error, letter.reason, letter.attempts) == ("ValueError", "attempt 4 failed", 4)
    assert letter.failed_at is not None
    assert letter.failed_at.endswith("Z")
    async with ctx.database.session() as session:
        assert (await session.execute(select(OutboxMessage))).first() is None


async def test_dead_letter_exception_skips_the_retries(ctx: ServiceContext) -> None:
    attempts = 0

    async def handle(*_: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise DeadLetter("order is already cancelled")

    await consume(ctx, handle)
    await send(ctx, envelope())
    [letter] = await dead_letters(ctx, 1)
    assert attempts == 1
    assert (letter.error, letter.reason, letter.attempts) == (
        "DeadLetter",
        "order is already cancelled",
        1,
    )


async def test_a_handler_that_recovers_on_retry_commits_once(ctx: ServiceContext) -> None:
    attempts = 0

    async def handle(uow: UnitOfWork, event: ThingEnvelope) -> None:
        nonlocal attempts
        attempts += 1
        uow.emit(THING_LOST, event.payload)
        if attempts < 3:
            raise ConnectionError("flaky")

    await consume(ctx, handle)
    event = envelope()
    await send(ctx, event)
    await eventually(lambda: attempts == 3)
    await asyncio.sleep(0.05)
    async with ctx.database.session() as session:
        rows = (await session.execute(select(OutboxMessage))).scalars().all()
    assert [row.event_name for row in rows] == [THING_LOST.name]
    emitted = json.loads(rows[0].body)
    assert emitted["causation_id"] == event["event_id"]
    assert emitted["correlation_id"] == event["correlation_id"]
    assert await ctx.bus.depth("unitdemo.dlq") == 0


def _redis_topology() -> Topology:
    """TOPOLOGY with unitdemo.queue declared for a service without a database."""
    first, *others = TOPOLOGY.queues
    return dataclasses.replace(
        TOPOLOGY, queues=(dataclasses.replace(first, inbox="redis"), *others)
    )


async def test_without_a_database_handlers_get_the_context_and_redis_dedupes(
    ctx: ServiceContext,
) -> None:
    """A service without a database (notification): `(ctx, event)`, deduplicated with Redis
    SET NX, and a failed attempt releases its claim so that the retry is not a duplicate."""
    seen: list[tuple[ServiceContext, ThingEnvelope]] = []
    attempts = 0

    async def on_made(service: ServiceContext, event: ThingEnvelope) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("smtp is down")
        seen.append((service, event))

    ctx.definition = dataclasses.replace(
        ctx.definition, migrations=None, consumers=SimpleNamespace(on_unitdemo_thing_made=on_made)
    )
    assert not ctx.has_database
    await start_consumers(
        ctx, topology=_redis_topology(), events=EVENTS, envelopes=ENVELOPES, schemas=SCHEMAS
    )
    event = envelope()
    before = counted(THING_MADE.name, "duplicate")
    await send(ctx, event)
    await eventually(lambda: len(seen) == 1)
    await send(ctx, event)  # redelivered: the Redis claim makes it a duplicate
    await eventually(lambda: counted(THING_MADE.name, "duplicate") == before + 1)

    assert attempts == 2
    [(service, model)] = seen
    assert service is ctx
    assert str(model.event_id) == event["event_id"]
    assert model.payload.quantity == 2
    assert await ctx.redis.get(ctx.keys(SERVICE, "inbox", event["event_id"])) == b"1"


async def test_consumers_are_resolved_and_checked_at_start_up(ctx: ServiceContext) -> None:
    def not_async(uow: UnitOfWork, event: ThingEnvelope) -> None:
        pass

    with pytest.raises(RuntimeError, match="on_unitdemo_thing_made must be a coroutine function"):
        await consume(ctx, not_async)

    async def on_made(uow: UnitOfWork, event: ThingEnvelope) -> None:
        pass

    ctx.definition = dataclasses.replace(
        ctx.definition, consumers=SimpleNamespace(on_unitdemo_thing_made=on_made)
    )
    with pytest.raises(RuntimeError, match=r"no envelope model for unitdemo\.thing\.made"):
        await start_consumers(ctx, topology=TOPOLOGY, events=EVENTS, envelopes={}, schemas=SCHEMAS)
    with pytest.raises(RuntimeError, match=r"no envelope JSON Schema for unitdemo\.thing\.made"):
        await start_consumers(ctx, topology=TOPOLOGY, events=EVENTS, envelopes=ENVELOPES)
    # The queue says "no database" but the service has one: the Protocol would lie.
    with pytest.raises(RuntimeError, match="inbox redis, but unitdemo has database"):
        await start_consumers(
            ctx, topology=_redis_topology(), events=EVENTS, envelopes=ENVELOPES, schemas=SCHEMAS
        )


async def test_dlq_show_and_replay_round_trip(ctx: ServiceContext) -> None:
    handled: list[str] = []
    fail = True

    async def handle(uow: UnitOfWork, event: ThingEnvelope) -> None:
        if fail:
            raise DeadLetter("not yet")
        handled.append(str(event.event_id))

    await consume(ctx, handle)
    events = [envelope() for _ in range(3)]
    for event in events:
        await send(ctx, event)
    letters = await dead_letters(ctx, 3)
    order = [letter.message_id for letter in letters]  # handlers run concurrently
    assert sorted(map(str, order)) == sorted(e["event_id"] for e in events)
    assert [letter.event_name for letter in letters] == [THING_MADE.name] * 3
    assert await ctx.bus.depth("unitdemo.dlq") == 3  # peeking took nothing away

    shown = await dlq.find(ctx.bus, "unitdemo.dlq", events[1]["event_id"])
    assert shown is not None
    assert shown.to_dict()["body"] == events[1]
    assert await dlq.find(ctx.bus, "unitdemo.dlq", "missing") is None

    fail = False
    assert await dlq.replay_from(ctx.bus, "unitdemo.dlq", events[1]["event_id"]) == 1
    await eventually(lambda: handled == [events[1]["event_id"]])
    assert [m.message_id for m in await dlq.peek(ctx.bus, "unitdemo.dlq")] == [
        message_id for message_id in order if message_id != events[1]["event_id"]
    ]
    assert await dlq.replay_from(ctx.bus, "unitdemo.dlq", dlq.ALL) == 2
    await eventually(lambda: len(handled) == 3)
    assert await ctx.bus.depth("unitdemo.dlq") == 0


async def test_replay_headers_drop_the_failure_and_count_replays() -> None:
    headers = dlq._replay_headers(
        {"origin": "x", "x-erp-error": "E", "x-death": [], "x-erp-replays": 1}
    )
    assert headers["origin"] == "x"
    assert "x-erp-error" not in headers
    assert "x-death" not in headers
    assert headers["x-erp-replays"] == 2


def things(*specs: EventSpec) -> list[tuple[EventSpec, BaseModel]]:
    return [(spec, Thing(thing_id=uuid4(), quantity=1)) for spec in specs]


async def test_relay_publishes_in_order_and_marks_rows(
    ctx: ServiceContext, bus: InProcessBus
) -> None:
    event_ids = await emit(ctx, things(THING_MADE, THING_LOST, THING_MADE))
    published = OUTBOX_PUBLISHED.labels(SERVICE)._value.get()

    assert await OutboxRelay(ctx, topology=TOPOLOGY).relay_once() == 3

    rows = await outbox_rows(ctx)
    assert all(row.published_at is not None for row in rows)
    assert OUTBOX_PUBLISHED.labels(SERVICE)._value.get() == published + 3
    queued = bus.router.queue("unitdemo.queue").messages
    assert [m.message_id for m in queued] == event_ids
    assert queued[0].headers["event_name"] == THING_MADE.name
    assert queued[0].correlation_id == json.loads(rows[0].body)["correlation_id"]


async def test_relay_keeps_rows_on_a_broker_error_and_marks_no_consumer_rows(
    ctx: ServiceContext, bus: InProcessBus
) -> None:
    nowhere = dataclasses.replace(
        THING_MADE, name="unitdemo.thing.ignored", routing_key="unitdemo.ignored"
    )
    broken = dataclasses.replace(
        THING_MADE, name="unitdemo.thing.broken", exchange="missing.events"
    )
    await emit(ctx, things(nowhere, broken, THING_MADE))
    # Only unitdemo.queue binds unitdemo.thing.* in this topology, and "#" on the watcher is
    # removed: nothing consumes "unitdemo.ignored".
    topology = Topology(TOPOLOGY.exchanges, (TOPOLOGY.queues[0],))
    relay = OutboxRelay(ctx, topology=topology)
    bus.router = InProcessRouter(topology)

    with pytest.raises(PublishError):
        await relay.relay_once()

    ignored, failed, waiting = await outbox_rows(ctx)
    assert ignored.published_at is not None  # no consumer: not kept forever
    assert failed.published_at is None
    assert failed.attempts == 1
    assert failed.last_error is not None
    assert "missing.events" in failed.last_error
    assert waiting.published_at is None  # order is kept behind the failing row


async def test_relay_run_wakes_on_the_commit_signal(ctx: ServiceContext, bus: InProcessBus) -> None:
    relay = OutboxRelay(ctx, poll_interval=30, topology=TOPOLOGY)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.05)
        [event_id] = await emit(ctx, things(THING_MADE))  # the commit sets ctx.outbox_signal
        queued = bus.router.queue("unitdemo.queue").messages
        await eventually(lambda: len(queued) == 1, within=2)  # well before the 30 s poll
        assert queued[0].message_id == event_id
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_service_without_queues_has_no_dead_letter_queue() -> None:
    assert dlq.dead_letter_queues("unitdemo", TOPOLOGY) == ["unitdemo.dlq"]
    with pytest.raises(LookupError, match="nobody consumes no events"):
        dlq.dead_letter_queues("nobody", TOPOLOGY)


async def test_dlq_depth_job_exports_the_depth_of_the_generated_dead_letter_queues() -> None:
    topology = GENERATED_TOPOLOGY
    queue = topology.queues[0]
    bus = InProcessBus(InProcessRouter(topology), service=queue.service)
    await bus.start()
    for _ in range(2):
        await bus.publish(queue.dead_letter_exchange, queue.dead_letter_routing_key, b"{}")
    definition = SimpleNamespace(topology=topology)
    ctx = cast(
        "ServiceContext", SimpleNamespace(name=queue.service, bus=bus, definition=definition)
    )

    await jobs.DLQ_DEPTH_JOB.run(ctx)

    assert jobs.DLQ_DEPTH.labels(queue.service, queue.dead_letter_queue)._value.get() == 2

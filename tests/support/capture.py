"""Every message on the wire of a vhost, captured and checked against the AsyncAPI document.

`Capture` declares the topology's exchanges (as the services will: same names, types and
durability) and an exclusive, auto-delete queue bound with `#` to every topic exchange and with
each dead-letter routing key to `dlx` — before any service starts, so that it sees everything
any of them publishes, dead letters included. `capture.messages` is what arrived so far, in
arrival order; `await capture.wait_for(...)` waits for a message.

`validate_wire(messages)` fails listing every breach of the contract (`violations(message)` of
one message): the routing key names a declared event on its exchange, the body validates
against the generated envelope JSON Schema of that event (jsonschema-rs, as the consumers do)
and has its version, the AMQP properties are DESIGN §4's (persistent, `application/json`,
`message_id` = `event_id`, the correlation id, and the priority and TTL the document declares),
`metadata.service` is the declared producer — and nothing was dead-lettered.

`saga_of(messages, order_id)` is the ordered events of one order (`messages_of` the same as
they came off the wire); `check_causality(events)`
fails unless they form one conversation: one correlation id, one start, and each caused
event's `causation_id` the `event_id` of an event of it that arrived before.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import aio_pika

from generated.events.publishers import EVENTS
from generated.events.schemas import ENVELOPE_SCHEMAS
from generated.topology import TOPOLOGY
from services.platform.core.contracts import Topology
from services.platform.http.validation import CompiledSchema, reject_json_constant
from tests.support.polling import eventually

CONTENT_TYPE = "application/json"
DEAD_LETTER_EXCHANGE = "dlx"
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


@dataclass(frozen=True)
class WireMessage:
    """One message as the capture queue received it."""

    exchange: str
    routing_key: str
    body: bytes
    delivery_mode: int | None
    content_type: str | None
    message_id: str | None
    correlation_id: str | None
    priority: int | None
    expiration: float | None  # seconds, as aio-pika decodes the property
    headers: Mapping[str, Any]
    arrived_at: float  # time.monotonic()

    @classmethod
    def of(cls, message: aio_pika.abc.AbstractIncomingMessage) -> WireMessage:
        return cls(
            exchange=message.exchange or "",
            routing_key=message.routing_key or "",
            body=message.body,
            delivery_mode=None if message.delivery_mode is None else int(message.delivery_mode),
            content_type=message.content_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            priority=message.priority,
            expiration=(
                float(message.expiration) if isinstance(message.expiration, int | float) else None
            ),
            headers=dict(message.headers),
            arrived_at=time.monotonic(),
        )

    @property
    def dead_letter(self) -> bool:
        return self.exchange == DEAD_LETTER_EXCHANGE

    def envelope(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one."""
        try:
            value = json.loads(self.body, parse_constant=reject_json_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    def header(self, name: str) -> Any:
        value = self.headers.get(name)
        return value.decode() if isinstance(value, bytes) else value


# --- capture ------------------------------------------------------------------------------------


@dataclass
class Capture:
    """`capture = await Capture.start(amqp_url)` before the services start; `await
    capture.stop()` at the end (the queue goes with its connection)."""

    connection: aio_pika.abc.AbstractRobustConnection
    queue: aio_pika.abc.AbstractQueue
    messages: list[WireMessage] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(
        cls,
        amqp_url: str,
        topology: Topology = TOPOLOGY,
        *,
        bindings: Iterable[tuple[str, str]] | None = None,
    ) -> Capture:
        """Capture everything (`#` on every topic exchange, every dead-letter routing key on
        its exchange), or only the (exchange, routing key) `bindings` given."""
        if bindings is None:
            everything = {
                (spec.name, "#") for spec in topology.exchanges if spec.type == "topic"
            } | {
                (queue.dead_letter_exchange, queue.dead_letter_routing_key)
                for queue in topology.queues
            }
            bindings = sorted(everything)
        connection = await aio_pika.connect_robust(amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(
                f"test.wire.{uuid.uuid4().hex}", exclusive=True, auto_delete=True
            )
            # Declared as the services declare them (same type and durability, so theirs
            # agree), for the queue to bind before any of them starts.
            for spec in topology.exchanges:
                await channel.declare_exchange(
                    spec.name, aio_pika.ExchangeType(spec.type), durable=spec.durable
                )
            for exchange, routing_key in bindings:
                await queue.bind(exchange, routing_key=routing_key)
        except BaseException:
            await connection.close()
            raise
        capture = cls(connection, queue)
        await queue.consume(capture._take, no_ack=True)
        return capture

    async def _take(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append(WireMessage.of(message))
        self._arrived.set()

    async def stop(self) -> None:
        await self.connection.close()

    def since(self, mark: int) -> list[WireMessage]:
        """What arrived after `mark = len(capture.messages)` was taken."""
        return self.messages[mark:]

    async def wait_for(
        self,
        matches: Callable[[WireMessage], bool],
        *,
        count: int = 1,
        within: float = 30,
        what: str = "a message",
    ) -> list[WireMessage]:
        """The first `count` messages that `matches`, waiting for them as long as `within`."""

        def found() -> list[WireMessage] | None:
            hits = [message for message in self.messages if matches(message)]
            return hits[:count] if len(hits) >= count else None

        hits: list[WireMessage] = await eventually(found, what=what, within=within, every=0.02)
        return hits

    async def wait_for_event(
        self, event_name: str, order_id: str, *, within: float = 30
    ) -> dict[str, Any]:
        """The envelope of the first `event_name` about order `order_id`."""
        hits = await self.wait_for(
            lambda message: (
                not message.dead_letter
                and message.routing_key == event_name
                and _order_id(message.envelope()) == order_id
            ),
            within=within,
            what=f"{event_name} for order {order_id}",
        )
        envelope = hits[0].envelope()
        assert envelope is not None
        return envelope

    async def quiet(self, seconds: float = 1.0) -> None:
        """Wait until nothing arrived for `seconds` (a late or duplicate message shows by then)."""
        while True:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=seconds)
            except TimeoutError:
                return


# --- the contract ---------------------------------------------------------------------------


@cache
def _schema(event_name: str) -> CompiledSchema:
    return CompiledSchema(ENVELOPE_SCHEMAS[event_name])


def violations(message: WireMessage) -> list[str]:
    """Every way `message` breaks the AsyncAPI document and DESIGN §4 ([] for a good one)."""
    if message.dead_letter:
        return [
            f"dead-lettered to {message.routing_key} from "
            f"{message.header('x-erp-original-routing-key')}: "
            f"{message.header('x-erp-error-reason')}"
        ]
    spec = EVENTS.get(message.routing_key)
    if spec is None:
        return [f"routing key {message.routing_key!r} is not a declared event"]
    found: list[str] = []
    if message.exchange != spec.exchange:
        found.append(f"published on {message.exchange!r}, the document says {spec.exchange!r}")
    if spec.persistent and message.delivery_mode != PERSISTENT:
        found.append(f"delivery_mode {message.delivery_mode}, not {PERSISTENT} (persistent)")
    if message.content_type != CONTENT_TYPE:
        found.append(f"content_type {message.content_type!r}, not {CONTENT_TYPE!r}")
    if (message.priority or 0) != (spec.priority or 0):
        found.append(f"priority {message.priority}, the document says {spec.priority}")
    expiration = None if spec.ttl_ms is None else spec.ttl_ms / 1000
    if message.expiration != expiration:
        found.append(f"expiration {message.expiration} s, the document says {expiration} s")
    envelope = message.envelope()
    if envelope is None:
        return [*found, "the body is not a JSON object"]
    schema = _schema(spec.name)
    if not schema.is_valid(envelope):
        found.extend(
            f"schema: {'/'.join(str(part) for part in error.absolute_path) or 'envelope'}: "
            f"{error.message}"
            for error in schema.violations(envelope)
        )
        # Types are unknown beyond this point: the checks below read well-formed envelopes.
        return found
    if envelope["event_name"] != message.routing_key:
        found.append(f"event_name {envelope['event_name']!r} is not the routing key")
    if envelope["event_version"] != spec.version:
        found.append(
            f"event_version {envelope['event_version']!r}, the document says {spec.version!r}"
        )
    if message.message_id != envelope["event_id"]:
        found.append(f"message_id {message.message_id!r} is not the event_id")
    if message.correlation_id != envelope["correlation_id"]:
        found.append(f"correlation_id property {message.correlation_id!r} is not the envelope's")
    if envelope["metadata"]["service"] != spec.producer:
        found.append(
            f"metadata.service {envelope['metadata']['service']!r}, the producer is "
            f"{spec.producer!r}"
        )
    return found


def validate_wire(messages: Iterable[WireMessage]) -> int:
    """Fail listing every breach of the contract in `messages`; else how many were checked."""
    checked = 0
    breaches: list[str] = []
    for message in messages:
        checked += 1
        breaches.extend(
            f"{message.exchange} {message.routing_key} {message.message_id}: {problem}"
            for problem in violations(message)
        )
    assert not breaches, "the wire breaks the contract:\n" + "\n".join(breaches)
    return checked


# --- one order's conversation ---------------------------------------------------------------


def _order_id(envelope: Mapping[str, Any] | None) -> Any:
    if envelope is None or not isinstance(envelope.get("payload"), dict):
        return None
    return envelope["payload"].get("order_id")


def messages_of(messages: Iterable[WireMessage], order_id: str) -> list[WireMessage]:
    """The events about order `order_id` (`payload.order_id`) as they came off the wire, in
    the order they arrived; dead letters are not events (`validate_wire` reports them)."""
    return [
        message
        for message in messages
        if not message.dead_letter and _order_id(message.envelope()) == order_id
    ]


def saga_of(messages: Iterable[WireMessage], order_id: str) -> list[dict[str, Any]]:
    """The envelopes of `messages_of(messages, order_id)`: one order's saga, in order."""
    found: list[dict[str, Any]] = []
    for message in messages_of(messages, order_id):
        envelope = message.envelope()
        assert envelope is not None
        found.append(envelope)
    return found


def check_causality(events: Sequence[Mapping[str, Any]]) -> None:
    """Fail unless `events` (arrival order) are one conversation: one `correlation_id`, one
    event that nothing caused (the first), and every other one caused by an event before it."""
    assert events, "no events"
    problems: list[str] = []
    correlation = events[0]["correlation_id"]
    seen: set[str] = set()
    for index, event in enumerate(events):
        name = f"{event['event_name']} {event['event_id']}"
        if event["correlation_id"] != correlation:
            problems.append(f"{name}: correlation_id {event['correlation_id']}, not {correlation}")
        cause = event["causation_id"]
        if index == 0:
            if cause is not None and cause in {other["event_id"] for other in events}:
                problems.append(f"{name}: the first event is caused by a later one ({cause})")
        elif cause is None:
            problems.append(f"{name}: no causation_id (only the first event starts the saga)")
        elif cause not in seen:
            problems.append(f"{name}: causation_id {cause} is no event that arrived before it")
        seen.add(event["event_id"])
    assert not problems, "the saga is not one conversation:\n" + "\n".join(problems)


def causes(events: Sequence[Mapping[str, Any]]) -> dict[str, str | None]:
    """Each event's name → the name of the event that caused it (None: nothing did, or a cause
    outside `events`), for one saga where no event name repeats:
    `assert causes(saga)["sales.order.confirmed"] == "inventory.stock.reserved"`."""
    by_id = {event["event_id"]: event["event_name"] for event in events}
    assert len(set(by_id.values())) == len(events), f"an event repeats: {names(events)}"
    return {event["event_name"]: by_id.get(event["causation_id"]) for event in events}


def names(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The event names of `events`, in order: `assert names(saga) == [...]`."""
    return [event["event_name"] for event in events]

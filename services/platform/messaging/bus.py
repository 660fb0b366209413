"""The message bus: RabbitMQ in production, an in-process broker in embedded mode.

Both implement `MessageBus`. Consumers receive an `IncomingMessage` and settle it (ack, requeue
or reject); a handler that returns without settling acks, one that raises requeues, so that a
message is acknowledged only after the handler's transaction has committed.

`RabbitBus` runs on FastStream's `RabbitBroker` (DESIGN §7): FastStream owns the robust
connection (aio-pika `connect_robust`, so channels, declarations, bindings and consumers come
back after a broker restart), the publisher-confirm channel and the subscribers. Queues are
declared through the aio-pika channel underneath, because FastStream's `RabbitQueue` adds its own
`x-queue-type` and the arguments must be exactly those of the generated topology.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import aiormq.exceptions
from faststream import AckPolicy, Context
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.message import RabbitMessage
from faststream.rabbit.schemas import Channel

from services.platform.core.contracts import QueueSpec, Topology, binding_matches

if TYPE_CHECKING:
    import aio_pika

from services.platform.core.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
DEFAULT_PREFETCH = 32
DEFAULT_CONFIRM_TIMEOUT = 10.0


class PublishError(Exception):
    """The broker did not take the message; nothing was delivered."""


class Unroutable(PublishError):  # noqa: N818 - reads as the broker's verdict
    """No queue is bound to the routing key (the mandatory message came back)."""


class PublishNacked(PublishError):  # noqa: N818
    """The broker refused the message (a negative publisher confirm)."""


class BrokerUnavailable(PublishError, ConnectionError):  # noqa: N818
    """The broker is not reachable (down, restarting, or the confirm timed out)."""


class Settlement(Enum):
    ACK = "ack"
    REQUEUE = "requeue"  # deliver again later
    REJECT = "reject"  # to the queue's own dead-letter exchange


class IncomingMessage:
    """A delivered message, whatever the transport; settle it once."""

    def __init__(
        self,
        *,
        body: bytes,
        headers: Mapping[str, Any],
        message_id: str | None,
        correlation_id: str | None,
        exchange: str,
        routing_key: str,
        queue: str,
        redelivered: bool,
        settle: Callable[[Settlement], Awaitable[None]],
    ) -> None:
        self.body = body
        self.headers: dict[str, Any] = dict(headers)
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.exchange = exchange
        self.routing_key = routing_key
        self.queue = queue
        self.redelivered = redelivered
        self._settle = settle
        self.settlement: Settlement | None = None

    async def ack(self) -> None:
        await self._finish(Settlement.ACK)

    async def requeue(self) -> None:
        await self._finish(Settlement.REQUEUE)

    async def reject(self) -> None:
        await self._finish(Settlement.REJECT)

    async def _finish(self, settlement: Settlement) -> None:
        if self.settlement is not None:
            raise RuntimeError(f"message {self.message_id} is already settled ({self.settlement})")
        self.settlement = settlement
        await self._settle(settlement)


MessageHandler = Callable[[IncomingMessage], Awaitable[None]]


class MessageBus(Protocol):
    async def start(self) -> None:
        """Connect and declare the topology (exchanges, queues, bindings, dead-letter queues)."""

    async def stop(self) -> None: ...

    async def ping(self) -> None:
        """Raise BrokerUnavailable unless the broker is reachable (for /health)."""

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        persistent: bool = True,
        priority: int | None = None,
        expiration_ms: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm; raise a PublishError if it is not taken."""

    async def subscribe(self, queue: QueueSpec, handler: MessageHandler) -> None:
        """Deliver the queue's messages to `handler` until `stop()`."""

    async def get(self, queue: str) -> IncomingMessage | None:
        """Take the next ready message without acknowledging it (AMQP basic.get); settle it."""

    async def depth(self, queue: str) -> int:
        """Messages ready in the queue."""


# --------------------------------------------------------------------------- RabbitMQ


class RabbitBus:
    """MessageBus on RabbitMQ through FastStream (publisher confirms, mandatory, manual ack).

    `start()` declares every exchange and every queue of the topology, not only this service's:
    an event published before its consumer first started then waits in the consumer's queue
    instead of coming back unroutable. Declarations are idempotent (same generated arguments
    everywhere), and the same topology is in deploy/rabbitmq/definitions.json.
    """

    def __init__(
        self,
        url: str,
        *,
        service: str,
        topology: Topology,
        prefetch: int = DEFAULT_PREFETCH,
        confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
        reconnect_interval: float = 2.0,
    ) -> None:
        self.service = service
        self.topology = topology
        self._confirm_timeout = confirm_timeout
        self._broker = RabbitBroker(
            url,
            # Returned (unroutable) mandatory messages raise; prefetch bounds unacked deliveries.
            default_channel=Channel(prefetch_count=prefetch, on_return_raises=True),
            reconnect_interval=reconnect_interval,
            app_id=f"erp-{service}",
            # FastStream logs every message at INFO; the consumer wrapper logs what matters.
            log_level=logging.DEBUG,
            graceful_timeout=30.0,
        )
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        await self._broker.start()
        self._started = True
        try:
            await self._declare()
        except BaseException:
            await self.stop()  # e.g. PRECONDITION_FAILED: do not leave the connection open
            raise

    async def _declare(self) -> None:
        channel = await self._channel()
        exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        for spec in self.topology.all_exchanges():
            exchanges[spec.name] = await channel.declare_exchange(
                spec.name, spec.type, durable=spec.durable
            )
        for queue in self.topology.queues:
            declared = await channel.declare_queue(
                queue.name, durable=True, arguments=dict(queue.arguments)
            )
            for binding in queue.bindings:
                await declared.bind(exchanges[binding.exchange], binding.routing_key)
            dead_letters = await channel.declare_queue(
                queue.dead_letter_queue,
                durable=True,
                arguments=self.topology.dead_letter_queue_arguments(queue),
            )
            await dead_letters.bind(
                exchanges[queue.dead_letter_exchange], queue.dead_letter_routing_key
            )
        log.info(
            "rabbitmq topology declared: %d exchanges, %d queues",
            len(exchanges),
            len(self.topology.queues),
        )

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self._broker.stop()

    async def ping(self) -> None:
        connection = self._broker._connection  # FastStream keeps it private (pinned 0.7.8)
        if not self._started or connection is None or connection.is_closed:
            raise BrokerUnavailable("not connected to RabbitMQ")
        channel = await self._channel()
        if channel.is_closed:
            raise BrokerUnavailable("the RabbitMQ channel is closed (reconnecting)")

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        persistent: bool = True,
        priority: int | None = None,
        expiration_ms: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        if not self._started:
            raise BrokerUnavailable("the bus is not started")
        try:
            async with asyncio.timeout(self._confirm_timeout):
                await self._broker.publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    mandatory=True,
                    persist=persistent,  # FastStream's default is transient
                    content_type=CONTENT_TYPE,
                    message_id=message_id,
                    headers=dict(headers or {}),
                    priority=priority,
                    expiration=None if expiration_ms is None else expiration_ms / 1000,
                    correlation_id=correlation_id,
                    timeout=self._confirm_timeout,
                )
        except aiormq.exceptions.PublishError as error:
            raise Unroutable(f"{exchange} {routing_key}: no queue is bound") from error
        except aiormq.exceptions.DeliveryError as error:
            raise PublishNacked(f"{exchange} {routing_key}: the broker refused it") from error
        except aiormq.exceptions.ChannelNotFoundEntity as error:
            raise PublishError(f"{exchange}: {error}") from error
        except (TimeoutError, ConnectionError, RuntimeError, aiormq.exceptions.AMQPError) as error:
            # RuntimeError: aiormq's ChannelInvalidStateError while the connection is down.
            raise BrokerUnavailable(f"{exchange} {routing_key}: {error!r}") from error

    async def subscribe(self, queue: QueueSpec, handler: MessageHandler) -> None:
        if not self._started:
            raise RuntimeError("start() the bus before subscribing")
        subscriber = self._broker.subscriber(
            RabbitQueue(queue.name, declare=False),  # declared in start() with its arguments
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            persistent=False,
            # The body reaches the handler undecoded: FastStream's JSON decoding would fail on a
            # malformed message before the wrapper could dead-letter it.
            decoder=_undecoded,
        )

        async def on_message(message: Annotated[RabbitMessage, Context("message")]) -> None:
            await _deliver(_rabbit_incoming(message.raw_message, queue.name), handler)

        subscriber(on_message)
        await subscriber.start()
        log.info("consuming %s", queue.name)

    async def get(self, queue: str) -> IncomingMessage | None:
        channel = await self._channel()
        declared = await channel.declare_queue(queue, passive=True, robust=False)
        raw = await declared.get(no_ack=False, fail=False, timeout=self._confirm_timeout)
        return None if raw is None else _rabbit_incoming(raw, queue)

    async def depth(self, queue: str) -> int:
        channel = await self._channel()
        # A passive declare reports the ready count; straight on the AMQP channel, because
        # aio-pika answers a passive declare of a known queue from its cache.
        underlay = await channel.get_underlay_channel()
        declared = await underlay.queue_declare(queue, passive=True)
        return int(declared.message_count or 0)

    async def _channel(self) -> aio_pika.abc.AbstractRobustChannel:
        channel: aio_pika.abc.AbstractRobustChannel = (
            await self._broker.config.channel_manager.get_channel()
        )
        return channel


async def _undecoded(message: RabbitMessage) -> bytes:
    return message.body


def _rabbit_incoming(raw: aio_pika.abc.AbstractIncomingMessage, queue: str) -> IncomingMessage:
    async def settle(settlement: Settlement) -> None:
        if settlement is Settlement.ACK:
            await raw.ack()
        elif settlement is Settlement.REQUEUE:
            await raw.nack(requeue=True)
        else:
            await raw.reject(requeue=False)

    return IncomingMessage(
        body=raw.body,
        headers=dict(raw.headers or {}),
        message_id=raw.message_id,
        correlation_id=raw.correlation_id,
        exchange=raw.exchange or "",
        routing_key=raw.routing_key or "",
        queue=queue,
        redelivered=bool(raw.redelivered),
        settle=settle,
    )


async def _deliver(message: IncomingMessage, handler: MessageHandler) -> None:
    """Run the handler; ack if it returned without settling, requeue if it raised."""
    try:
        await handler(message)
    except Exception:
        log.exception("handler of %s failed on message %s", message.queue, message.message_id)
        if message.settlement is None:
            with contextlib.suppress(Exception):  # the channel may be gone: redelivered anyway
                await message.requeue()
        return
    if message.settlement is None:
        await message.ack()


# --------------------------------------------------------------------------- embedded


@dataclass(eq=False)  # identity: two equal bodies are still two messages
class StoredMessage:
    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    correlation_id: str | None
    exchange: str
    routing_key: str
    priority: int = 0
    deliveries: int = 0  # failed deliveries (requeues), for x-delivery-limit
    held: bool = False  # delivered or fetched and not settled yet


@dataclass(eq=False)
class _MemoryQueue:
    spec: QueueSpec | None  # None for a dead-letter queue
    name: str
    messages: deque[StoredMessage] = field(default_factory=deque)
    ready: asyncio.Condition | None = None

    def condition(self) -> asyncio.Condition:
        # Created on first use, inside the running loop.
        if self.ready is None:
            self.ready = asyncio.Condition()
        return self.ready

    @property
    def prioritised(self) -> bool:
        return self.spec is not None and "x-max-priority" in self.spec.arguments

    async def put(self, message: StoredMessage) -> None:
        if self.prioritised:
            # Higher priority first, FIFO within one priority (as RabbitMQ's priority queues).
            position = next(
                (i for i, queued in enumerate(self.messages) if queued.priority < message.priority),
                len(self.messages),
            )
            self.messages.insert(position, message)
        else:
            self.messages.append(message)
        async with self.condition():
            self.condition().notify()

    def take_ready(self) -> StoredMessage | None:
        for message in self.messages:
            if not message.held:
                message.held = True
                return message
        return None

    async def wait_ready(self) -> StoredMessage:
        condition = self.condition()
        async with condition:
            while (message := self.take_ready()) is None:
                await condition.wait()
            return message

    def depth(self) -> int:
        return sum(1 for message in self.messages if not message.held)


class InProcessRouter:
    """One process-wide broker for embedded mode: every queue of the topology exists from the
    start (as when RabbitMQ loads the definitions file), so messages wait for late consumers."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.exchanges = {spec.name: spec for spec in topology.all_exchanges()}
        self.queues: dict[str, _MemoryQueue] = {}
        for spec in topology.queues:
            self.queues[spec.name] = _MemoryQueue(spec, spec.name)
            self.queues.setdefault(
                spec.dead_letter_queue, _MemoryQueue(None, spec.dead_letter_queue)
            )

    def route(self, exchange: str, routing_key: str) -> list[_MemoryQueue]:
        spec = self.exchanges.get(exchange)
        if spec is None:
            raise PublishError(f"no exchange {exchange!r}")
        targets: dict[str, _MemoryQueue] = {}
        for queue in self.topology.queues:
            if exchange == queue.dead_letter_exchange and (
                routing_key == queue.dead_letter_routing_key
            ):
                targets[queue.dead_letter_queue] = self.queues[queue.dead_letter_queue]
            for binding in queue.bindings:
                if binding.exchange == exchange and binding_matches(
                    spec.type, binding.routing_key, routing_key
                ):
                    targets[queue.name] = self.queues[queue.name]
        return list(targets.values())

    async def publish(self, message: StoredMessage) -> None:
        targets = self.route(message.exchange, message.routing_key)
        if not targets:
            raise Unroutable(f"{message.exchange} {message.routing_key}: no queue is bound")
        for queue in targets:
            # Each queue gets its own copy, as RabbitMQ does.
            await queue.put(
                StoredMessage(
                    message.body,
                    dict(message.headers),
                    message.message_id,
                    message.correlation_id,
                    message.exchange,
                    message.routing_key,
                    message.priority,
                )
            )

    def queue(self, name: str) -> _MemoryQueue:
        try:
            return self.queues[name]
        except KeyError:
            raise LookupError(f"no queue {name!r} in the topology") from None

    async def settle(self, queue: _MemoryQueue, message: StoredMessage, how: Settlement) -> None:
        message.held = False
        if how is Settlement.ACK:
            queue.messages.remove(message)
            return
        limit = queue.spec.arguments.get("x-delivery-limit") if queue.spec else None
        if how is Settlement.REQUEUE:
            message.deliveries += 1
            if limit is None or message.deliveries <= int(limit):
                async with queue.condition():
                    queue.condition().notify()
                return
        queue.messages.remove(message)
        if queue.spec is None:
            return  # a dead-letter queue has no dead-letter exchange: dropped, as in RabbitMQ
        reason = "rejected" if how is Settlement.REJECT else "delivery_limit"
        death = {
            "queue": queue.name,
            "reason": reason,
            "exchange": message.exchange,
            "routing-keys": [message.routing_key],
            "count": 1,
        }
        await self.publish(
            StoredMessage(
                message.body,
                {**message.headers, "x-death": [death]},
                message.message_id,
                message.correlation_id,
                queue.spec.dead_letter_exchange,
                queue.spec.dead_letter_routing_key,
            )
        )


class InProcessBus:
    """One service's handle on the process-wide InProcessRouter (embedded mode).

    Nothing is persisted: dead letters live as long as the process (inspect them with the dlq
    functions from inside it).
    """

    def __init__(self, router: InProcessRouter, *, service: str, workers: int = 4) -> None:
        self.router = router
        self.service = service
        self._workers = workers
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def ping(self) -> None:
        if not self._started:
            raise BrokerUnavailable("the in-process bus is not started")

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        persistent: bool = True,
        priority: int | None = None,
        expiration_ms: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        # persistent / expiration_ms have no meaning in memory (no restart, no TTL emulation).
        if not self._started:
            raise BrokerUnavailable("the in-process bus is not started")
        await self.router.publish(
            StoredMessage(
                body,
                dict(headers or {}),
                message_id,
                correlation_id,
                exchange,
                routing_key,
                priority or 0,
            )
        )

    async def subscribe(self, queue: QueueSpec, handler: MessageHandler) -> None:
        if not self._started:
            raise RuntimeError("start() the bus before subscribing")
        memory = self.router.queue(queue.name)
        for _ in range(self._workers):  # competing consumers, like a bounded prefetch
            task = asyncio.create_task(self._consume(memory, handler), name=f"consume:{queue.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _consume(self, queue: _MemoryQueue, handler: MessageHandler) -> None:
        while True:
            stored = await queue.wait_ready()
            message = self._incoming(queue, stored)
            try:
                await _deliver(message, handler)
            finally:
                if message.settlement is None:  # cancelled mid-handler: deliver it again
                    await self.router.settle(queue, stored, Settlement.REQUEUE)

    def _incoming(self, queue: _MemoryQueue, stored: StoredMessage) -> IncomingMessage:
        async def settle(settlement: Settlement) -> None:
            await self.router.settle(queue, stored, settlement)

        return IncomingMessage(
            body=stored.body,
            headers=stored.headers,
            message_id=stored.message_id,
            correlation_id=stored.correlation_id,
            exchange=stored.exchange,
            routing_key=stored.routing_key,
            queue=queue.name,
            redelivered=stored.deliveries > 0,
            settle=settle,
        )

    async def get(self, queue: str) -> IncomingMessage | None:
        memory = self.router.queue(queue)
        stored = memory.take_ready()
        return None if stored is None else self._incoming(memory, stored)

    async def depth(self, queue: str) -> int:
        return self.router.queue(queue).depth()


_routers: dict[int, tuple[Topology, InProcessRouter]] = {}


def in_process_router(topology: Topology) -> InProcessRouter:
    """The process-wide embedded broker of `topology`: every service of `erp up` declares the
    same generated topology, so they all share one router and their events reach each other."""
    known = _routers.get(id(topology))
    if known is None or known[0] is not topology:
        known = _routers[id(topology)] = (topology, InProcessRouter(topology))
    return known[1]


def create_bus(settings: Settings, topology: Topology) -> MessageBus:
    """RabbitMQ when `settings.amqp_url` is set, else a handle on the in-process broker."""
    if settings.amqp_url is None:
        return InProcessBus(in_process_router(topology), service=settings.service)
    return RabbitBus(settings.amqp_url, service=settings.service, topology=topology)

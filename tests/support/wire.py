"""The real RabbitMQ as the tests use it when they play a producer: publish a body the way the
platform publishes, and take one message out of a service's dead-letter queue."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika

from generated.events.publishers import EVENTS
from tests.support.polling import eventually


async def publish_body(
    channel: aio_pika.abc.AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    *,
    message_id: str,
    correlation_id: str | None = None,
) -> None:
    """Publish like a producer of the platform: persistent JSON with a message id, confirmed by
    the broker and routed (`mandatory`), with the priority and TTL the document gives the event
    the routing key names; `exchange` "" is the default exchange, which routes to the queue
    named by `routing_key`."""
    target = channel.default_exchange if exchange == "" else await channel.get_exchange(exchange)
    spec = EVENTS.get(routing_key)
    await target.publish(
        aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            priority=None if spec is None else spec.priority,
            expiration=None if spec is None or spec.ttl_ms is None else spec.ttl_ms / 1000,
        ),
        routing_key=routing_key,
        mandatory=True,
    )


@dataclass(frozen=True)
class DeadLetterSeen:
    message_id: str | None
    headers: Mapping[str, Any]
    body: bytes
    arrived_after: float  # seconds from the start of the wait

    def header(self, name: str) -> Any:
        value = self.headers.get(name)
        return value.decode() if isinstance(value, bytes) else value


async def take_dead_letter(
    channel: aio_pika.abc.AbstractChannel, queue_name: str, message_id: str, within: float = 30
) -> DeadLetterSeen:
    """Wait for `message_id` in the dead-letter queue `queue_name` and take it off the queue;
    every other letter is put back as it was (held unacknowledged while looking, then
    requeued)."""
    started = time.monotonic()
    queue = await channel.declare_queue(queue_name, passive=True)

    async def look() -> DeadLetterSeen | None:
        held: list[aio_pika.abc.AbstractIncomingMessage] = []
        try:
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                if message.message_id == message_id:
                    await message.ack()
                    return DeadLetterSeen(
                        message.message_id,
                        dict(message.headers),
                        message.body,
                        time.monotonic() - started,
                    )
                held.append(message)
            return None
        finally:
            for message in held:
                await message.nack(requeue=True)

    letter: DeadLetterSeen = await eventually(
        look, what=f"{message_id} in {queue_name}", within=within, every=0.05
    )
    return letter

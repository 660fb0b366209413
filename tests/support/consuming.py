"""Deliver envelopes to a service the way its queue would, through the kit's real consumer
(routing-key dispatch, envelope schema, producer check, inbox, retries, dead letters), without
a broker: the tests of every arrival order of a saga."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from generated.events.publishers import EVENTS
from generated.topology import TOPOLOGY
from services.platform.core.settings import Settings
from services.platform.http.validation import CompiledSchema
from services.platform.messaging.bus import (
    IncomingMessage,
    InProcessBus,
    InProcessRouter,
    Settlement,
)
from services.platform.runtime.consumers import MessageConsumer, resolve_handlers
from services.platform.runtime.service import ServiceContext, ServiceDefinition
from tests.support.contexts import migrated_database, service_context


@dataclass(frozen=True)
class Delivery:
    dead_letter_reason: str | None  # None: handled (or dropped as a duplicate)
    attempts: int = 0  # of a dead letter: how often the handler ran

    @property
    def handled(self) -> bool:
        return self.dead_letter_reason is None


Deliver = Callable[[dict[str, Any]], Awaitable[Delivery]]


def consumer_of(ctx: ServiceContext, router: InProcessRouter) -> Deliver:
    """`await deliver(envelope)`: the envelope as the service's queue would hand it over; a
    dead letter is taken out of the router's `<service>.dlq` and its reason given back."""
    definition = ctx.definition
    name = f"{definition.name}.queue"
    queue = next(q for q in TOPOLOGY.queues if q.name == name)
    handlers = resolve_handlers(ctx, queue, definition.envelopes, definition.envelope_schemas)
    compiled = {event: CompiledSchema(definition.envelope_schemas[event]) for event in handlers}
    consumer = MessageConsumer(ctx, queue, EVENTS, definition.envelopes, compiled, handlers)
    dead_letters = router.queue(f"{definition.name}.dlq").messages

    async def settle(how: Settlement) -> None:
        """The bus settles after the consumer; a dead letter is acked by the consumer."""

    async def deliver(body: dict[str, Any]) -> Delivery:
        event = body["event_name"]
        message = IncomingMessage(
            body=json.dumps(body).encode(),
            headers={},
            message_id=body["event_id"],
            correlation_id=body["correlation_id"],
            exchange=EVENTS[event].exchange,
            routing_key=event,
            queue=name,
            redelivered=False,
            settle=settle,
        )
        before = len(dead_letters)
        await consumer(message)
        if len(dead_letters) == before:
            return Delivery(None)
        headers = dead_letters.pop().headers
        return Delivery(str(headers["x-erp-error-reason"]), int(str(headers["x-erp-attempts"])))

    return deliver


@asynccontextmanager
async def consuming_context(
    definition: ServiceDefinition,
    settings: Settings,
    router: InProcessRouter,
    *start_up: Callable[[ServiceContext], Awaitable[None]],
) -> AsyncIterator[ServiceContext]:
    """The service's context on its migrated database and an in-process bus on `router` (whose
    `<service>.dlq` `consumer_of` reads), after the given start-up hooks of the service."""
    bus = InProcessBus(router, service=definition.name)
    await bus.start()
    try:
        async with (
            migrated_database(definition, settings) as database,
            service_context(definition, settings, bus=bus, database=database) as running,
        ):
            for hook in start_up:
                await hook(running)
            yield running
    finally:
        await bus.stop()

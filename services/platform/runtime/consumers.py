"""The consumer wrapper: from a delivered message to a committed, exactly-once effect.

Per message (DESIGN §4):

1. parse the JSON envelope, validate it and its payload against the generated models; invalid
   JSON, a schema failure or an event this service has no handler for → dead letter at once;
2. with correlation_id = the envelope's and causation_id = its event_id in the request context
   (so events the handler emits continue the conversation), open a unit of work, record the
   event in the inbox (a duplicate is acknowledged and changes nothing), run the handler,
   commit, and only then acknowledge;
3. a failing handler is retried in-process after each of `settings.retry_delays`; after the
   last attempt, or at once when it raises `DeadLetter`, the original body and headers are
   published to the queue's dead-letter exchange (`dlx`, routing key `<service>.dlq`) with the
   failure in `x-erp-*` headers, and the original is acknowledged.

A service without a database (notification) dedupes with Redis `SET NX` (24 h) instead of the
inbox table, and its handlers receive `uow=None`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from prometheus_client import Counter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from services.platform.core import scope as requestctx
from services.platform.core.contracts import EventSpec, QueueSpec, Topology
from services.platform.messaging.bus import IncomingMessage
from services.platform.persistence.uow import UnitOfWork
from services.platform.runtime.service import Consumer, ServiceContext, use_context

log = logging.getLogger(__name__)

REDIS_INBOX_TTL_SECONDS = 24 * 3600
MAX_REASON_LENGTH = 1000

CONSUMER_MESSAGES = Counter(
    "erp_consumer_messages_total",
    "Messages taken by event consumers, by outcome: handled, duplicate, retried (one per failed"
    " attempt that is tried again), dead_lettered (handler failure), invalid (schema, JSON or"
    " unknown event).",
    ["service", "event", "outcome"],
)


class DeadLetter(Exception):  # noqa: N818 - names what happens to the message
    """Raise in a handler to dead-letter the event at once, without retries (e.g. an illegal
    state transition: retrying cannot make it legal)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidMessage(Exception):  # noqa: N818
    """The message breaks the contract: no JSON, a schema failure or an unknown event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Envelope(BaseModel):
    """What the wrapper reads from any envelope (DESIGN §4) before it knows the event; the
    event's generated envelope model then checks the whole message against the contract."""

    model_config = ConfigDict(extra="allow")

    event_id: UUID
    event_name: str = Field(min_length=1)
    event_version: str = Field(pattern=r"^\d+\.\d+$")
    occurred_at: AwareDatetime
    correlation_id: UUID
    causation_id: UUID | None = None
    payload: dict[str, Any]
    metadata: dict[str, Any]


async def start_consumers(
    ctx: ServiceContext,
    *,
    topology: Topology | None = None,
    events: Mapping[str, EventSpec] | None = None,
    envelopes: Mapping[str, type[BaseModel]] | None = None,
) -> None:
    """Subscribe every queue of the service.

    `topology`, `events` and `envelopes` (the model of each event's whole envelope) default to
    the service definition's; tests pass their own.
    """
    definition = ctx.definition
    topology = topology or definition.topology
    if events is None:
        events, envelopes = definition.events, definition.envelopes
    for queue in topology.queues_for(ctx.definition.name):
        missing = sorted(set(queue.consumes) - set(ctx.definition.consumers))
        if missing:
            log.warning(
                "%s has no handler for %s: such events will be dead-lettered",
                ctx.definition.name,
                ", ".join(missing),
            )
        await ctx.bus.subscribe(queue, MessageConsumer(ctx, queue, events, envelopes or {}))


class MessageConsumer:
    """Handles the messages of one queue for one service (see the module docstring)."""

    def __init__(
        self,
        ctx: ServiceContext,
        queue: QueueSpec,
        events: Mapping[str, EventSpec],
        envelopes: Mapping[str, type[BaseModel]],
    ) -> None:
        self.ctx = ctx
        self.queue = queue
        self.events = events
        self.envelopes = envelopes
        self.service = ctx.definition.name

    async def __call__(self, message: IncomingMessage) -> None:
        # Delivery tasks do not inherit the context of whoever subscribed: bind it here.
        with use_context(self.ctx):
            await self._handle(message)

    async def _handle(self, message: IncomingMessage) -> None:
        try:
            envelope, model, payload, handler = self._decode(message)
        except InvalidMessage as invalid:
            log.warning(
                "%s: invalid message %s on %s: %s",
                self.service,
                message.message_id,
                message.routing_key,
                invalid.reason,
            )
            await self._dead_letter(message, invalid, invalid.reason, attempts=0)
            # Labelled by routing key: a broken body's event_name is unbounded input.
            self._count(message.routing_key, "invalid")
            return

        event_name = model.event_name
        delays = self.ctx.settings.retry_delays
        with _conversation(self.service, model):
            for attempt in range(1, len(delays) + 2):
                try:
                    handled = await self._run(handler, model, envelope, payload)
                except DeadLetter as refused:
                    log.warning(
                        "%s refused %s %s: %s", self.service, event_name, model.event_id, refused
                    )
                    await self._dead_letter(message, refused, refused.reason, attempts=attempt)
                    self._count(event_name, "dead_lettered")
                    return
                except Exception as error:
                    if attempt > len(delays):
                        log.exception(
                            "%s: %s %s failed %d times: dead-lettered",
                            self.service,
                            event_name,
                            model.event_id,
                            attempt,
                        )
                        reason = str(error) or repr(error)
                        await self._dead_letter(message, error, reason, attempts=attempt)
                        self._count(event_name, "dead_lettered")
                        return
                    delay = delays[attempt - 1]
                    log.warning(
                        "%s: %s %s failed (attempt %d, retry in %ss): %r",
                        self.service,
                        event_name,
                        model.event_id,
                        attempt,
                        delay,
                        error,
                    )
                    self._count(event_name, "retried")
                    await asyncio.sleep(delay)
                else:
                    self._count(event_name, "handled" if handled else "duplicate")
                    return

    def _decode(
        self, message: IncomingMessage
    ) -> tuple[dict[str, Any], Envelope, BaseModel, Consumer]:
        try:
            envelope = json.loads(message.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidMessage(f"body is not JSON: {error}") from error
        if not isinstance(envelope, dict):
            raise InvalidMessage("body is not a JSON object (an event envelope)")
        try:
            model = Envelope.model_validate(envelope)
        except ValidationError as error:
            raise InvalidMessage(f"envelope: {_describe(error)}") from error
        spec = self.events.get(model.event_name)
        if spec is None:
            raise InvalidMessage(f"unknown event {model.event_name!r}")
        if model.event_version.split(".")[0] != spec.version.split(".")[0]:
            raise InvalidMessage(
                f"{model.event_name} version {model.event_version} is not supported "
                f"(this service reads {spec.version})"
            )
        handler = self.ctx.definition.consumers.get(model.event_name)
        if handler is None:
            raise InvalidMessage(f"{self.service} has no handler for {model.event_name}")
        try:
            payload = spec.payload_model.model_validate(model.payload)
        except ValidationError as error:
            raise InvalidMessage(f"payload: {_describe(error)}") from error
        contract = self.envelopes.get(model.event_name)
        if contract is not None:
            # The generated envelope model is the whole schema (no extra fields, metadata).
            try:
                contract.model_validate(envelope)
            except ValidationError as error:
                raise InvalidMessage(f"envelope: {_describe(error)}") from error
        return envelope, model, payload, handler

    async def _run(
        self, handler: Consumer, model: Envelope, envelope: dict[str, Any], payload: BaseModel
    ) -> bool:
        """One attempt; False when the event had been handled before (a duplicate)."""
        if not self.ctx.has_database:
            return await self._run_without_database(handler, model, envelope, payload)
        async with self.ctx.unit_of_work() as uow:
            if not await uow.mark_handled(self.service, model.event_id, model.event_name):
                return False
            await handler(self.ctx, uow, envelope, payload)
            await uow.commit()
        return True

    async def _run_without_database(
        self, handler: Consumer, model: Envelope, envelope: dict[str, Any], payload: BaseModel
    ) -> bool:
        # The seed's IdempotencyGuard: claim the event id; release the claim if handling fails
        # so that the retry (or a redelivery) may claim it again.
        key = self.ctx.keys(self.service, "inbox", str(model.event_id))
        claimed = await self.ctx.redis.set(key, "1", nx=True, ex=REDIS_INBOX_TTL_SECONDS)
        if not claimed:
            return False
        try:
            await handler(self.ctx, cast("UnitOfWork", None), envelope, payload)
        except BaseException:
            await self.ctx.redis.delete(key)
            raise
        return True

    async def _dead_letter(
        self, message: IncomingMessage, error: Exception, reason: str, *, attempts: int
    ) -> None:
        """Publish the original body and headers to the DLQ with the failure, then ack."""
        headers = {
            **message.headers,
            "x-erp-error": type(error).__name__,
            "x-erp-error-reason": reason[:MAX_REASON_LENGTH],
            "x-erp-failed-at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "x-erp-attempts": attempts,
            "x-erp-original-exchange": message.exchange,
            "x-erp-original-routing-key": message.routing_key,
        }
        await self.ctx.bus.publish(
            self.queue.dead_letter_exchange,
            self.queue.dead_letter_routing_key,
            message.body,
            message_id=message.message_id,
            headers=headers,
            persistent=True,
            correlation_id=message.correlation_id,
        )
        await message.ack()

    def _count(self, event: str, outcome: str) -> None:
        CONSUMER_MESSAGES.labels(self.service, event, outcome).inc()


@contextmanager
def _conversation(service: str, envelope: Envelope) -> Iterator[None]:
    """Events emitted while handling carry the cause's correlation id and its id as cause."""
    token = requestctx.service.set(service)
    try:
        with requestctx.bind(
            correlation=str(envelope.correlation_id), causation=str(envelope.event_id)
        ):
            yield
    finally:
        requestctx.service.reset(token)


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )

"""The consumer wrapper: from a delivered message to a committed, exactly-once effect.

At start-up, for every event the service's queues receive, the handler is looked up once on
the object `ServiceDefinition.consumers` names (the service's consumers module): the coroutine
`on_<event name, dots as underscores>` that the generated consumer Protocol
(`generated/events/consumers.py`) declares and the service's `service.py` checks with mypy.

Per message (DESIGN §4):

1. trust nothing on the wire (ADR 0007): the routing key names the event (on the exchange
   its spec declares; the body's `event_name` must agree), the JSON envelope must match the
   event's JSON Schema strictly — as JSON, before any model parses it, so `"5"`, `5.0` or
   `true` is never taken for an integer — and `metadata.service` must be the event's declared
   producer. A message failing any of these, or one this service has no handler for, is dead
   lettered at once with a reason naming the check (`routing key: ...`, `schema: ...`,
   `producer: ...`); only then is it parsed into the generated envelope model;
2. with correlation_id = the envelope's and causation_id = its event_id in the request context
   (so events the handler emits continue the conversation), open a unit of work, record the
   event in the inbox (a duplicate is acknowledged and changes nothing), call the handler with
   the unit of work and the validated envelope model (`event.payload` typed), commit, and only
   then acknowledge;
3. a failing handler is retried in-process after each of `settings.retry_delays`; after the
   last attempt, or at once when it raises `DeadLetter` or the database refused a value (a
   data or integrity error that would fail again: `persistence.failures`), the original body
   and headers are
   published to the queue's dead-letter exchange (`dlx`, routing key `<service>.dlq`) with the
   failure in `x-erp-*` headers, and the original is acknowledged. A database error's reason
   is its SQLSTATE, never the statement.

A service without a database (notification; `x-erp-queue.inbox: redis`) dedupes with Redis
`SET NX` (24 h) instead of the inbox table, and its handlers receive the service context
instead of a unit of work: `async def on_auth_user_registered(ctx, event)`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias
from uuid import UUID

from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from services.platform.core import scope as requestctx
from services.platform.core.contracts import (
    EventSpec,
    JsonSchema,
    QueueSpec,
    Topology,
    consumer_method,
)
from services.platform.http.validation import CompiledSchema, reject_json_constant
from services.platform.messaging.bus import IncomingMessage
from services.platform.persistence.failures import database_failure
from services.platform.runtime.service import ServiceContext, use_context

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


Handler: TypeAlias = Callable[[Any, BaseModel], Awaitable[None]]
"""A resolved consumer method: `(uow, event)`, or `(ctx, event)` without a database; the
generated consumer Protocol types each one exactly."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the wrapper itself needs of a message that passed every check."""

    event_id: UUID
    event_name: str
    correlation_id: UUID


async def start_consumers(
    ctx: ServiceContext,
    *,
    topology: Topology | None = None,
    events: Mapping[str, EventSpec] | None = None,
    envelopes: Mapping[str, type[BaseModel]] | None = None,
    schemas: Mapping[str, JsonSchema] | None = None,
) -> None:
    """Subscribe every queue of the service, its handlers resolved first.

    `topology`, `events`, `envelopes` (the model of each event's whole envelope) and `schemas`
    (the JSON Schema of each event's whole envelope) default to the service definition's;
    tests pass their own.
    """
    definition = ctx.definition
    topology = topology or definition.topology
    if events is None:
        events, envelopes = definition.events, definition.envelopes
        schemas = definition.envelope_schemas
    envelopes = envelopes or {}
    schemas = schemas or {}
    for queue in topology.queues_for(definition.name):
        handlers = resolve_handlers(ctx, queue, envelopes, schemas)
        missing = [name for name in queue.consumes if name not in handlers]
        if missing:
            log.warning(
                "%s has no handler for %s: such events will be dead-lettered",
                definition.name,
                ", ".join(missing),
            )
        # Compiled once, at start-up: each message then costs one jsonschema-rs pass.
        compiled = {name: CompiledSchema(schemas[name]) for name in handlers}
        consumer = MessageConsumer(ctx, queue, events, envelopes, compiled, handlers)
        await ctx.bus.subscribe(queue, consumer)


def resolve_handlers(
    ctx: ServiceContext,
    queue: QueueSpec,
    envelopes: Mapping[str, type[BaseModel]],
    schemas: Mapping[str, JsonSchema],
) -> dict[str, Handler]:
    """The handler of each event `queue` delivers, from the definition's consumers object.

    Refuses to start (RuntimeError) when the queue's declared inbox does not match the service
    (the generated Protocol would then promise the wrong first argument), when a handler is not
    a coroutine function, or when an event it handles has no envelope model or schema.
    """
    definition = ctx.definition
    inbox = "database" if ctx.has_database else "redis"
    if queue.consumes and queue.inbox != inbox:
        raise RuntimeError(
            f"{queue.name} is declared with x-erp-queue.inbox {queue.inbox}, but "
            f"{definition.name} {'has' if ctx.has_database else 'has no'} database"
        )
    handlers: dict[str, Handler] = {}
    for name in queue.consumes:
        handler = getattr(definition.consumers, consumer_method(name), None)
        if handler is None:
            continue
        if not inspect.iscoroutinefunction(handler):
            raise RuntimeError(
                f"{definition.name}: consumers.{consumer_method(name)} must be a coroutine "
                f"function (async def), not {type(handler).__name__}"
            )
        if name not in envelopes:
            raise RuntimeError(f"{definition.name}: no envelope model for {name}")
        if name not in schemas:
            raise RuntimeError(f"{definition.name}: no envelope JSON Schema for {name}")
        handlers[name] = handler
    return handlers


class MessageConsumer:
    """Handles the messages of one queue for one service (see the module docstring)."""

    def __init__(
        self,
        ctx: ServiceContext,
        queue: QueueSpec,
        events: Mapping[str, EventSpec],
        envelopes: Mapping[str, type[BaseModel]],
        schemas: Mapping[str, CompiledSchema],
        handlers: Mapping[str, Handler],
    ) -> None:
        self.ctx = ctx
        self.queue = queue
        self.events = events
        self.envelopes = envelopes
        self.schemas = schemas
        self.handlers = handlers
        self.service = ctx.definition.name

    async def __call__(self, message: IncomingMessage) -> None:
        # Delivery tasks do not inherit the context of whoever subscribed: bind it here.
        with use_context(self.ctx):
            await self._handle(message)

    async def _handle(self, message: IncomingMessage) -> None:
        try:
            model, event, handler = self._decode(message)
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
                    handled = await self._run(handler, model, event)
                except DeadLetter as refused:
                    log.warning(
                        "%s refused %s %s: %s", self.service, event_name, model.event_id, refused
                    )
                    await self._dead_letter(message, refused, refused.reason, attempts=attempt)
                    self._count(event_name, "dead_lettered")
                    return
                except Exception as error:
                    failure = database_failure(error)
                    if attempt > len(delays) or (failure is not None and failure.permanent):
                        log.exception(
                            "%s: %s %s failed (attempt %d%s): dead-lettered",
                            self.service,
                            event_name,
                            model.event_id,
                            attempt,
                            ", it would fail again" if attempt <= len(delays) else "",
                        )
                        # A database error's text holds the statement: the header gets its
                        # SQLSTATE only (the log above has the rest).
                        reason = failure.reason if failure else (str(error) or repr(error))
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

    def _decode(self, message: IncomingMessage) -> tuple[Envelope, BaseModel, Handler]:
        try:
            envelope = json.loads(message.body, parse_constant=reject_json_constant)
        except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
            raise InvalidMessage(f"body is not JSON: {error}") from error
        except RecursionError:
            raise InvalidMessage("body is not JSON: nested too deeply") from None
        if not isinstance(envelope, dict):
            raise InvalidMessage("body is not a JSON object (an event envelope)")
        # The routing key is what the broker routed on (and what bindings and permissions
        # see); the body only claims a name.
        name = message.routing_key
        spec = self.events.get(name)
        if spec is None:
            raise InvalidMessage(f"routing key: unknown event {name!r}")
        if message.exchange != spec.exchange:
            raise InvalidMessage(
                f"routing key: {name} is published on {spec.exchange}, not on {message.exchange!r}"
            )
        claimed = envelope.get("event_name")
        if isinstance(claimed, str) and claimed != name:
            raise InvalidMessage(
                f"routing key: the body's event_name {claimed[:100]!r} is not the routing key "
                f"{name!r}"
            )
        handler = self.handlers.get(name)
        if handler is None:
            raise InvalidMessage(f"{self.service} has no handler for {name}")
        schema = self.schemas[name]
        if not schema.is_valid(envelope):
            raise InvalidMessage(f"schema: {_schema_failures(schema, envelope)}")
        # Valid against the schema: metadata.service and event_version are strings now.
        producer = envelope["metadata"]["service"]
        if producer != spec.producer:
            raise InvalidMessage(
                f"producer: {name} is published by {spec.producer}, not by {producer!r} "
                "(metadata.service)"
            )
        version = envelope["event_version"]
        if version.split(".")[0] != spec.version.split(".")[0]:
            raise InvalidMessage(
                f"{name} version {version} is not supported (this service reads {spec.version})"
            )
        try:
            # The generated model of the whole envelope: what the handler gets.
            event = self.envelopes[name].model_validate(envelope)
        except ValidationError as error:
            raise InvalidMessage(f"envelope: {_describe(error)}") from error
        facts = Envelope(
            event_id=UUID(envelope["event_id"]),
            event_name=name,
            correlation_id=UUID(envelope["correlation_id"]),
        )
        return facts, event, handler

    async def _run(self, handler: Handler, model: Envelope, event: BaseModel) -> bool:
        """One attempt; False when the event had been handled before (a duplicate)."""
        if not self.ctx.has_database:
            return await self._run_without_database(handler, model, event)
        async with self.ctx.unit_of_work() as uow:
            if not await uow.mark_handled(self.service, model.event_id, model.event_name):
                return False
            await handler(uow, event)
            await uow.commit()
        return True

    async def _run_without_database(
        self, handler: Handler, model: Envelope, event: BaseModel
    ) -> bool:
        # The seed's IdempotencyGuard: claim the event id; release the claim if handling fails
        # so that the retry (or a redelivery) may claim it again.
        key = self.ctx.keys(self.service, "inbox", str(model.event_id))
        claimed = await self.ctx.redis.set(key, "1", nx=True, ex=REDIS_INBOX_TTL_SECONDS)
        if not claimed:
            return False
        try:
            await handler(self.ctx, event)
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


_SIZE_KEYWORDS = {
    "maxItems": "at most {limit} items, not {size}",
    "minItems": "at least {limit} items, not {size}",
    "maxLength": "at most {limit} characters, not {size}",
    "minLength": "at least {limit} characters, not {size}",
    "maxProperties": "at most {limit} members, not {size}",
}


def _schema_failures(schema: CompiledSchema, envelope: Any) -> str:
    """`field: what is wrong; ...`, each once, sorted by field. A size check says the sizes
    rather than quoting the whole (possibly huge) value, as jsonschema's own message does."""
    listed: dict[str, None] = {}
    for error in schema.violations(envelope):
        field = ".".join(str(part) for part in error.absolute_path) or "(root)"
        template = _SIZE_KEYWORDS.get(str(error.validator))
        if template is not None and isinstance(error.instance, list | str | dict):
            message = template.format(limit=error.validator_value, size=len(error.instance))
        elif error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            for name in missing:
                listed[f"{field}.{name}".removeprefix("(root).") + ": is required"] = None
            continue
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            declared = error.schema.get("properties", {})
            for name in error.instance:
                if name not in declared:
                    listed[f"{field}.{name}".removeprefix("(root).") + ": is not allowed"] = None
            continue
        else:
            message = error.message[:200]
        listed[f"{field}: {message}"] = None
    # jsonschema-rs refused it; its Python twin should always say why, but never say nothing.
    return "; ".join(sorted(listed)) or "the envelope does not match its schema"


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )

"""From the AsyncAPI 3.0 document: events, exchanges and queues, and the files made of them.

Reads the conventions of docs/adr/0001-foundation.md:

* an event is a message of a `send` operation on a channel whose AMQP binding is
  `is: routingKey` (address = routing key, `exchange` = where it is published); the operation's
  `x-erp-service` is the producer and its AMQP binding gives `deliveryMode`, `priority` and
  `expiration` (ms);
* the message's `payload` references the event's envelope schema, whose `payload` property
  references the payload schema; `x-erp-event-version` is the envelope `event_version`;
* every exchange is the `exchange` of some `is: routingKey` channel (domain exchanges without
  events have a channel of their own, and so does the dead-letter exchange);
* a queue is a channel with `is: queue` and the extension `x-erp-queue` (`service`, `type`,
  `arguments`, `dead-letter`, `bindings`, and `inbox`: `database` — the default — or `redis`
  for a service without a database); a queue named as another queue's `dead-letter.queue` is a
  dead-letter queue (it has no `dead-letter` of its own);
* a `receive` operation on a queue channel lists the messages its `x-erp-service` consumes;
  each consuming service gets a consumer Protocol with one method per such event
  (`generated/events/consumers.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.platform.core.contracts import consumer_method
from tools.codegen.bundle import JsonObject, pointer_tokens, resolve_pointer, split_ref
from tools.codegen.common import (
    CodegenError,
    docstring,
    dump_json,
    generated_note,
    header,
    pascal,
    py_literal,
    upper_snake,
)

EXCHANGE_TYPES = ("topic", "direct", "fanout", "headers")
QUEUE_TYPES = ("quorum", "classic")
INBOX_KINDS = ("database", "redis")


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str
    durable: bool
    auto_delete: bool


@dataclass(frozen=True)
class Event:
    name: str  # message name = event name
    version: str
    exchange: str
    routing_key: str
    producer: str
    envelope_schema: str  # components.schemas name of the envelope model
    payload_schema: str  # components.schemas name of the payload model
    persistent: bool
    priority: int | None
    ttl_ms: int | None
    summary: str

    @property
    def constant(self) -> str:
        return upper_snake(self.name)

    @property
    def function(self) -> str:
        return "publish_" + upper_snake(self.name).lower()


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str
    service: str
    durable: bool
    arguments: dict[str, Any]  # x-queue-type first, then the extension's arguments, sorted
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class Queue:
    name: str
    service: str
    durable: bool
    arguments: dict[str, Any]  # sorted; includes x-queue-type and the dead-letter arguments
    bindings: tuple[tuple[str, str], ...]  # (exchange, routing key pattern)
    dead_letter: DeadLetterQueue
    consumes: tuple[str, ...]
    inbox: str = "database"  # "database" | "redis": what the service's consumers receive


@dataclass(frozen=True)
class EventsDocument:
    source: str
    exchanges: tuple[Exchange, ...]
    events: tuple[Event, ...]
    queues: tuple[Queue, ...]
    schemas: JsonObject  # components.schemas, as written


def _deref(document: JsonObject, node: Any, where: str) -> tuple[str | None, Any]:
    """Follow local references; the pointer of the last one (None when `node` is inline)."""
    pointer: str | None = None
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        file_part, pointer = split_ref(ref)
        if file_part:
            raise CodegenError(f"{where}: external reference {ref!r} is not supported")
        if ref in seen:
            raise CodegenError(f"{where}: circular reference {ref!r}")
        seen.add(ref)
        node = resolve_pointer(document, pointer, where)
    return pointer, node


def _mapping(value: Any, where: str) -> JsonObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CodegenError(f"{where}: expected a mapping, got {value!r}")
    return value


def _amqp(node: JsonObject) -> JsonObject:
    return _mapping(_mapping(node.get("bindings"), "bindings").get("amqp"), "bindings.amqp")


def _schema_name(document: JsonObject, node: Any, where: str) -> str:
    pointer, _ = _deref(document, node, where)
    tokens = pointer_tokens(pointer) if pointer is not None else []
    if len(tokens) != 3 or tokens[:2] != ["components", "schemas"]:
        raise CodegenError(f"{where}: must be a $ref to components.schemas")
    return tokens[2]


def _payload_property(document: JsonObject, envelope: str, where: str) -> str:
    """The schema name the envelope's `payload` property references (also through allOf)."""
    _, schema = _deref(document, {"$ref": f"#/components/schemas/{envelope}"}, where)
    parts = [schema, *[_deref(document, part, where)[1] for part in schema.get("allOf") or []]]
    for part in reversed(parts):
        payload = _mapping(_mapping(part, where).get("properties"), where).get("payload")
        if isinstance(payload, dict) and "$ref" in payload:
            return _schema_name(document, payload, f"{where}: {envelope}.payload")
    raise CodegenError(f"{where}: envelope {envelope} has no `payload` property with a $ref")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise CodegenError(f"{where}: a non-empty string is required")
    return value


def _optional_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CodegenError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _exchanges(document: JsonObject, source: str) -> dict[str, Exchange]:
    exchanges: dict[str, Exchange] = {}
    for channel_id, channel in _mapping(document.get("channels"), "channels").items():
        where = f"{source}: channels.{channel_id}"
        amqp = _amqp(_mapping(channel, where))
        if amqp.get("is", "routingKey") != "routingKey" or "exchange" not in amqp:
            continue
        spec = _mapping(amqp["exchange"], where)
        name = spec.get("name")
        kind = spec.get("type", "topic")
        if not isinstance(name, str) or not name or kind not in EXCHANGE_TYPES:
            raise CodegenError(f"{where}: exchange needs a name and a type in {EXCHANGE_TYPES}")
        exchange = Exchange(
            name, kind, bool(spec.get("durable", True)), bool(spec.get("autoDelete", False))
        )
        if exchanges.setdefault(name, exchange) != exchange:
            raise CodegenError(f"{where}: exchange {name} is declared differently elsewhere")
    return exchanges


def _events(document: JsonObject, source: str) -> list[Event]:
    events: dict[str, Event] = {}
    for operation_id, operation in _mapping(document.get("operations"), "operations").items():
        where = f"{source}: operations.{operation_id}"
        operation = _mapping(operation, where)
        if operation.get("action") != "send":
            continue
        _, channel = _deref(document, operation.get("channel"), where)
        amqp_channel = _amqp(_mapping(channel, where))
        exchange = _mapping(amqp_channel.get("exchange"), where).get("name")
        if amqp_channel.get("is", "routingKey") != "routingKey" or not isinstance(exchange, str):
            raise CodegenError(f"{where}: a send operation needs a routingKey channel + exchange")
        routing_key = channel.get("address")
        if not isinstance(routing_key, str) or not routing_key:
            raise CodegenError(f"{where}: the channel has no address (routing key)")
        producer = operation.get("x-erp-service")
        if not isinstance(producer, str) or not producer:
            raise CodegenError(f"{where}: x-erp-service (the producer) is required")
        binding = _amqp(operation)
        delivery_mode = binding.get("deliveryMode", 2)
        if delivery_mode not in (1, 2):
            raise CodegenError(f"{where}: deliveryMode must be 1 or 2")
        messages = operation.get("messages") or list(
            _mapping(channel.get("messages"), where).values()
        )
        if not messages:
            raise CodegenError(f"{where}: no message")
        for raw in messages:
            _, message = _deref(document, raw, where)
            message = _mapping(message, where)
            name = message.get("name")
            version = message.get("x-erp-event-version")
            if not isinstance(name, str) or not name:
                raise CodegenError(f"{where}: message without a name")
            if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+", version):
                raise CodegenError(f"{where}: message {name} needs x-erp-event-version 'M.m'")
            envelope = _schema_name(document, message.get("payload"), f"{where}: {name}")
            event = Event(
                name=name,
                version=version,
                exchange=exchange,
                routing_key=routing_key,
                producer=producer,
                envelope_schema=envelope,
                payload_schema=_payload_property(document, envelope, f"{where}: {name}"),
                persistent=delivery_mode == 2,
                priority=_optional_int(binding.get("priority"), f"{where}: priority"),
                ttl_ms=_optional_int(binding.get("expiration"), f"{where}: expiration"),
                summary=str(message.get("summary") or message.get("title") or "").strip(),
            )
            if name in events and events[name] != event:
                raise CodegenError(f"{where}: event {name} is sent by more than one operation")
            events[name] = event
    return list(events.values())


def _consumed(document: JsonObject, source: str) -> dict[str, list[str]]:
    """Queue channel id → event names received from it, in document order."""
    consumed: dict[str, list[str]] = {}
    for operation_id, operation in _mapping(document.get("operations"), "operations").items():
        where = f"{source}: operations.{operation_id}"
        operation = _mapping(operation, where)
        if operation.get("action") != "receive":
            continue
        pointer, channel = _deref(document, operation.get("channel"), where)
        tokens = pointer_tokens(pointer) if pointer else []
        if len(tokens) != 2 or tokens[0] != "channels" or _amqp(channel).get("is") != "queue":
            raise CodegenError(f"{where}: a receive operation needs a $ref to a queue channel")
        names = consumed.setdefault(tokens[1], [])
        for raw in operation.get("messages") or list(
            _mapping(channel.get("messages"), where).values()
        ):
            name = _mapping(_deref(document, raw, where)[1], where).get("name")
            if not isinstance(name, str):
                raise CodegenError(f"{where}: message without a name")
            if name not in names:
                names.append(name)
    return consumed


def _inbox(extension: JsonObject, where: str) -> str:
    inbox = extension.get("inbox", "database")
    if inbox not in INBOX_KINDS:
        raise CodegenError(f"{where}: x-erp-queue.inbox must be one of {INBOX_KINDS}")
    return str(inbox)


def _queue_parts(
    channel_id: str, channel: JsonObject, where: str
) -> tuple[str, JsonObject, bool, dict[str, Any]]:
    amqp = _amqp(channel)
    queue = _mapping(amqp.get("queue"), where)
    name = queue.get("name", channel.get("address"))
    extension = _mapping(channel.get("x-erp-queue"), where)
    if not isinstance(name, str) or not name:
        raise CodegenError(f"{where}: the queue has no name")
    if not extension:
        raise CodegenError(f"{where}: a queue channel needs the x-erp-queue extension")
    kind = extension.get("type", "quorum")
    if kind not in QUEUE_TYPES:
        raise CodegenError(f"{where}: x-erp-queue.type must be one of {QUEUE_TYPES}")
    extra = _mapping(extension.get("arguments"), f"{where}: arguments")
    arguments: dict[str, Any] = {"x-queue-type": kind}
    for key in sorted(extra):
        if key in arguments or key.startswith("x-dead-letter-"):
            raise CodegenError(f"{where}: argument {key} comes from type / dead-letter")
        arguments[key] = extra[key]
    return name, extension, bool(queue.get("durable", True)), arguments


def _bindings(extension: JsonObject, where: str) -> tuple[tuple[str, str], ...]:
    result: list[tuple[str, str]] = []
    for raw in extension.get("bindings") or []:
        binding = _mapping(raw, where)
        exchange, routing_key = binding.get("exchange"), binding.get("routing-key")
        if not isinstance(exchange, str) or not isinstance(routing_key, str):
            raise CodegenError(f"{where}: a binding needs exchange and routing-key")
        result.append((exchange, routing_key))
    return tuple(result)


def _queues(document: JsonObject, source: str, exchanges: dict[str, Exchange]) -> list[Queue]:
    consumed = _consumed(document, source)
    parsed: dict[str, tuple[str, str, JsonObject, bool, dict[str, Any]]] = {}
    for channel_id, channel in _mapping(document.get("channels"), "channels").items():
        where = f"{source}: channels.{channel_id}"
        if _amqp(_mapping(channel, where)).get("is") != "queue":
            continue
        name, extension, durable, arguments = _queue_parts(channel_id, channel, where)
        if name in parsed:
            raise CodegenError(f"{where}: queue {name} is declared twice")
        parsed[name] = (channel_id, where, extension, durable, arguments)
        for exchange, _ in _bindings(extension, where):
            if exchange not in exchanges:
                raise CodegenError(f"{where}: binding to undeclared exchange {exchange}")
        if channel_id in consumed and "dead-letter" not in extension:
            raise CodegenError(f"{where}: a consumed queue needs x-erp-queue.dead-letter")

    dead_letter_names = {
        _mapping(extension.get("dead-letter"), where).get("queue")
        for _, where, extension, _, _ in parsed.values()
        if "dead-letter" in extension
    }
    queues: list[Queue] = []
    for name, (channel_id, where, extension, durable, arguments) in sorted(parsed.items()):
        service = extension.get("service")
        if not isinstance(service, str) or not service:
            raise CodegenError(f"{where}: x-erp-queue.service is required")
        if name in dead_letter_names:
            if "dead-letter" in extension:
                raise CodegenError(f"{where}: a dead-letter queue cannot dead-letter again")
            continue
        if "dead-letter" not in extension:
            raise CodegenError(
                f"{where}: x-erp-queue.dead-letter is required (or name this queue as another "
                "queue's dead-letter queue)"
            )
        dead = _mapping(extension["dead-letter"], f"{where}: dead-letter")
        dlx, dl_key, dlq = (
            _text(dead.get(key), f"{where}: dead-letter.{key}")
            for key in ("exchange", "routing-key", "queue")
        )
        if dlx not in exchanges:
            raise CodegenError(f"{where}: dead-letter exchange {dlx} is not declared")
        if dlq not in parsed:
            raise CodegenError(f"{where}: dead-letter queue {dlq} has no channel")
        _, dlq_where, dlq_extension, dlq_durable, dlq_arguments = parsed[dlq]
        if (dlx, dl_key) not in _bindings(dlq_extension, dlq_where):
            raise CodegenError(f"{dlq_where}: must be bound to {dlx} with routing key {dl_key}")
        if len(_bindings(dlq_extension, dlq_where)) != 1:
            raise CodegenError(f"{dlq_where}: a dead-letter queue has exactly one binding")
        dlq_service = dlq_extension.get("service")
        if dlq_service != service:
            raise CodegenError(f"{dlq_where}: belongs to {dlq_service}, its queue to {service}")
        queue_arguments = dict(arguments)
        queue_arguments["x-dead-letter-exchange"] = dlx
        queue_arguments["x-dead-letter-routing-key"] = dl_key
        queues.append(
            Queue(
                name=name,
                service=service,
                durable=durable,
                arguments=dict(sorted(queue_arguments.items())),
                bindings=_bindings(extension, where),
                dead_letter=DeadLetterQueue(
                    name=dlq,
                    service=service,
                    durable=dlq_durable,
                    arguments=dict(sorted(dlq_arguments.items())),
                    exchange=dlx,
                    routing_key=dl_key,
                ),
                consumes=tuple(consumed.get(channel_id, ())),
                inbox=_inbox(extension, where),
            )
        )
    orphans = sorted(set(consumed) - {channel_id for channel_id, *_ in parsed.values()})
    if orphans:
        raise CodegenError(f"{source}: receive operations on unknown queue channels {orphans}")
    return queues


def read_events(document: JsonObject, source: str) -> EventsDocument:
    """Parse the AsyncAPI document (already loaded) into events, exchanges and queues."""
    if str(document.get("asyncapi", "")).split(".")[0] != "3":
        raise CodegenError(f"{source}: AsyncAPI 3.x is required")
    exchanges = _exchanges(document, source)
    events = _events(document, source)
    for event in events:
        if event.exchange not in exchanges:
            raise CodegenError(f"{source}: event {event.name} goes to undeclared {event.exchange}")
    schemas = _mapping(_mapping(document.get("components"), "components").get("schemas"), source)
    return EventsDocument(
        source=source,
        exchanges=tuple(exchanges[name] for name in sorted(exchanges)),
        events=tuple(events),
        queues=tuple(_queues(document, source, exchanges)),
        schemas=schemas,
    )


# ---------------------------------------------------------------------------------- rendering


def _rewrite_refs(node: Any, where: str) -> Any:
    if isinstance(node, dict):
        result: JsonObject = {}
        for key, value in node.items():
            if key == "$ref":
                if not isinstance(value, str) or not value.startswith("#/components/schemas/"):
                    raise CodegenError(f"{where}: $ref {value!r} must be #/components/schemas/")
                result[key] = "#/definitions/" + value.removeprefix("#/components/schemas/")
            else:
                result[key] = _rewrite_refs(value, where)
        return result
    if isinstance(node, list):
        return [_rewrite_refs(item, where) for item in node]
    return node


def events_json_schema(events: EventsDocument) -> JsonObject:
    """One JSON Schema (draft-07) document with every schema of the AsyncAPI document.

    Its root accepts any event envelope (`AnyEvent`); `definitions` holds the envelope, the
    per-event envelopes and the payloads. It is the input of the events models and a handy
    validator for published messages.
    """
    envelopes = list(dict.fromkeys(event.envelope_schema for event in events.events))
    if envelopes:
        root: JsonObject = {"anyOf": [{"$ref": f"#/definitions/{name}"} for name in envelopes]}
    elif "EventEnvelope" in events.schemas:
        root = {"$ref": "#/definitions/EventEnvelope"}
    else:
        raise CodegenError(f"{events.source}: no event and no EventEnvelope schema")
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": generated_note(events.source),
        "title": "AnyEvent",
        "description": "Any event of the platform: the envelope of one of the declared events.",
        **root,
        "definitions": _rewrite_refs(events.schemas, events.source),
    }


# Consumers validate messages with a Draft 4 validator (the kit's, shared with HTTP): keywords
# of later drafts would be silently ignored there, so an event schema may not use them.
_LATER_DRAFT_KEYWORDS = frozenset(
    {"const", "contains", "propertyNames", "if", "then", "else", "dependentRequired", "$defs"}
)


def _check_draft4(node: Any, where: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            later = key in _LATER_DRAFT_KEYWORDS or (
                key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool)
            )
            if later:
                raise CodegenError(f"{where}: {key} is not JSON Schema draft 4 (use enum/minimum)")
            _check_draft4(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _check_draft4(item, f"{where}[{index}]")


def render_schemas(events: EventsDocument) -> str:
    """`generated/events/schemas.py`: the JSON Schema of every event's whole envelope, which
    consumers check each message against (strictly: no coercion) before parsing it."""
    definitions = _rewrite_refs(events.schemas, events.source)
    _check_draft4(definitions, f"{events.source}: components.schemas")
    table = "".join(
        f'    {e.name!r}: {{"$ref": "#/definitions/{e.envelope_schema}", '
        f'"definitions": DEFINITIONS}},\n'
        for e in events.events
    )
    return f'''{header(events.source)}
"""Event JSON Schemas, from {events.source}.

`ENVELOPE_SCHEMAS` maps every event name to the JSON Schema (draft 4) of its whole envelope,
`$ref`s into `DEFINITIONS` (the document's components.schemas). The kit's consumer wrapper
checks every message against it, as JSON, before any model parses it: a `"5"` or `5.0` where
the contract says integer is refused, not coerced.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["DEFINITIONS", "ENVELOPE_SCHEMAS"]

DEFINITIONS: Mapping[str, Any] = {py_literal(definitions)}

ENVELOPE_SCHEMAS: Mapping[str, Mapping[str, Any]] = MappingProxyType({{
{table}}})
"""The envelope schema of every event by name."""
'''


def check_models_source(events: EventsDocument, models_source: str) -> None:
    """Every payload and envelope schema became a class of that name in the models module."""
    for event in events.events:
        for name in (event.payload_schema, event.envelope_schema):
            if not re.search(rf"^class {re.escape(name)}\(", models_source, re.MULTILINE):
                raise CodegenError(
                    f"{events.source}: schema {name} of {event.name} did not become a model "
                    "class of that name (rename the schema)"
                )


def render_publishers(events: EventsDocument) -> str:
    source = events.source
    models = sorted(
        {e.payload_schema for e in events.events} | {e.envelope_schema for e in events.events}
    )
    imports = (
        "from generated.events.models import (\n" + "".join(f"    {m},\n" for m in models) + ")\n"
        if models
        else ""
    )
    constants = "\n\n".join(
        f"{e.constant} = EventSpec(\n"
        f"    name={e.name!r},\n"
        f"    version={e.version!r},\n"
        f"    exchange={e.exchange!r},\n"
        f"    routing_key={e.routing_key!r},\n"
        f"    producer={e.producer!r},\n"
        f"    payload_model={e.payload_schema},\n"
        f"    persistent={e.persistent!r},\n"
        f"    priority={e.priority!r},\n"
        f"    ttl_ms={e.ttl_ms!r},\n"
        ")\n"
        f'"""{e.name} v{e.version}: {e.producer} → {e.exchange}."""'
        for e in events.events
    )
    functions = "\n\n\n".join(
        f"def {e.function}(sink: EventSink, payload: {e.payload_schema}) -> UUID:\n"
        f"    {docstring(_function_doc(e), 4)}\n"
        f"    return sink.emit({e.constant}, payload)"
        for e in events.events
    )
    events_table = "".join(f"    {e.name!r}: {e.constant},\n" for e in events.events)
    envelopes_table = "".join(f"    {e.name!r}: {e.envelope_schema},\n" for e in events.events)
    names = ["EVENTS", "ENVELOPE_MODELS"]
    names += [e.constant for e in events.events] + [e.function for e in events.events]
    return f'''{header(source)}
"""Event publishers, from {source}.

One `EventSpec` constant per event (exchange, routing key, producer, envelope version,
persistence, priority, TTL, payload model) and one typed function per event that records the
event in an `EventSink` (the unit of work's outbox):

    publish_auth_user_registered(uow, AuthUserRegisteredPayload(...))

Each returns the event's id (a later event of the conversation may name it as its cause).

`EVENTS` maps every event name to its spec; `ENVELOPE_MODELS` maps it to the model of its
whole envelope (to validate a message as it travels).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from uuid import UUID

from pydantic import BaseModel

{imports}from services.platform.core.contracts import EventSink, EventSpec

__all__ = {py_literal(names)}

{constants}

EVENTS: Mapping[str, EventSpec] = MappingProxyType({{
{events_table}}})
"""Every event of the document by name."""

ENVELOPE_MODELS: Mapping[str, type[BaseModel]] = MappingProxyType({{
{envelopes_table}}})
"""The envelope model of every event by name."""


{functions}
'''


def _function_doc(event: Event) -> str:
    summary = event.summary.rstrip(".")
    extras = []
    if event.priority is not None:
        extras.append(f"priority {event.priority}")
    if event.ttl_ms is not None:
        extras.append(f"TTL {event.ttl_ms} ms")
    tail = f" ({', '.join(extras)})" if extras else ""
    lead = f"{summary}. " if summary else ""
    return f"{lead}Emit `{event.name}` to {event.exchange}{tail}."


@dataclass(frozen=True)
class ConsumerProtocol:
    service: str
    inbox: str  # "database" | "redis"
    queues: tuple[str, ...]
    events: tuple[Event, ...]  # in document order of the receive operations

    @property
    def name(self) -> str:
        return f"{pascal(self.service)}Consumers"


def consumer_protocols(events: EventsDocument) -> list[ConsumerProtocol]:
    """One per service whose queues receive events, sorted by service."""
    by_name = {event.name: event for event in events.events}
    services: dict[str, list[Queue]] = {}
    for queue in events.queues:
        if queue.consumes:
            services.setdefault(queue.service, []).append(queue)
    protocols: list[ConsumerProtocol] = []
    for service in sorted(services):
        queues = services[service]
        inboxes = {queue.inbox for queue in queues}
        if len(inboxes) != 1:
            raise CodegenError(
                f"{events.source}: the queues of {service} disagree on x-erp-queue.inbox"
            )
        names = list(dict.fromkeys(name for queue in queues for name in queue.consumes))
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise CodegenError(
                f"{events.source}: {service} receives {', '.join(unknown)}, which no send "
                "operation publishes"
            )
        methods: dict[str, str] = {}
        for name in names:
            method = consumer_method(name)
            if method in methods:
                raise CodegenError(
                    f"{events.source}: {service} receives {methods[method]} and {name}, which "
                    f"both make the consumer method {method}"
                )
            methods[method] = name
        protocols.append(
            ConsumerProtocol(
                service=service,
                inbox=inboxes.pop(),
                queues=tuple(queue.name for queue in queues),
                events=tuple(by_name[name] for name in names),
            )
        )
    return protocols


def render_consumers(events: EventsDocument) -> str:
    """`generated/events/consumers.py`: the consumer Protocol of every consuming service."""
    source = events.source
    protocols = consumer_protocols(events)
    models = sorted({event.envelope_schema for p in protocols for event in p.events})
    imports = (
        "from generated.events.models import (\n" + "".join(f"    {m},\n" for m in models) + ")\n"
        if models
        else ""
    )
    kit = sorted({"UnitOfWork" if p.inbox == "database" else "ServiceContext" for p in protocols})
    kit_import = f"from services.platform import {', '.join(kit)}\n" if kit else ""
    classes = "\n\n".join(_consumer_protocol(protocol) for protocol in protocols)
    names = [protocol.name for protocol in protocols]
    return f'''{header(source)}
"""Consumer Protocols, from {source}.

One Protocol per service that consumes events, with one method per event its queue receives
(the `receive` operations; `x-erp-queue`), named `on_<event name, dots as underscores>` and
taking the event's validated envelope model (`event.payload` is the typed payload, and
`event.event_id`, `event.correlation_id`, `event.metadata` are there). The kit's consumer
wrapper finds these methods at start-up on the object `ServiceDefinition(consumers=...)` names
(the service's consumers module) and calls them after recording the event as handled:

* a service with a database (`x-erp-queue.inbox: database`, the default) gets the unit of work
  holding the inbox row, committed by the kit after the method returns:
  `async def on_sales_order_created(self, uow, event) -> None`;
* a service without one (`inbox: redis`, deduplicated with Redis `SET NX`) gets the running
  service's context: `async def on_auth_user_registered(self, ctx, event) -> None`.

A module satisfies a Protocol, so each consuming service's `service.py` proves its consumers
to mypy, as it does its HTTP handlers:

    consumers_check: InventoryConsumers = services.inventory.consumers
"""

from __future__ import annotations

from typing import Protocol

{imports}{kit_import}
__all__ = {py_literal(names)}


{classes}
'''


def _consumer_protocol(protocol: ConsumerProtocol) -> str:
    if protocol.inbox == "database":
        first = "uow: UnitOfWork"
        how = (
            "Each method gets the unit of work the kit opened (the inbox row is in it) and "
            "must not commit: the kit commits after it returns."
        )
    else:
        first = "ctx: ServiceContext"
        how = (
            "The service has no database (Redis deduplicates): each method gets the running "
            "service's context."
        )
    queues = ", ".join(protocol.queues)
    lines = [
        f"class {protocol.name}(Protocol):",
        f"    {docstring(f'What {protocol.service} does with the events of {queues}. {how}', 4)}",
    ]
    for event in protocol.events:
        lead = f"{event.summary.rstrip('.')}. " if event.summary else ""
        doc = f"{lead}`{event.name}` v{event.version}, published by {event.producer}."
        lines += [
            "",
            f"    async def {consumer_method(event.name)}(",
            f"        self, {first}, event: {event.envelope_schema}",
            "    ) -> None:",
            f"        {docstring(doc, 8)}",
            "        ...",
        ]
    return "\n".join(lines) + "\n"


def render_topology(events: EventsDocument) -> str:
    source = events.source
    exchanges = "".join(
        f"    ExchangeSpec(name={x.name!r}, type={x.type!r}, durable={x.durable!r}),\n"
        for x in events.exchanges
    )
    queues = "".join(_queue_spec(q) for q in events.queues)
    dead = "".join(
        f"    {q.dead_letter.name!r}: MappingProxyType({py_literal(q.dead_letter.arguments)}),\n"
        for q in events.queues
    )
    return f'''{header(source)}
"""RabbitMQ topology, from {source}.

The platform kit declares it at start-up; deploy/rabbitmq/definitions.json holds the same.

* `EXCHANGES`: every exchange of the document (the domain topic exchanges and the dead-letter
  exchange `dlx`).
* `QUEUES`: one `QueueSpec` per consuming queue (`<service>.queue`) with its arguments
  (`x-queue-type`, `x-dead-letter-exchange`, `x-dead-letter-routing-key` and the extra
  arguments of `x-erp-queue`), its bindings, and `consumes`: the events its service receives.
  Dead-letter queues are not `QueueSpec`s: each queue names its own in `dead_letter_queue`,
  bound to `dead_letter_exchange` with `dead_letter_routing_key`; the kit declares it from
  those fields with the arguments in `DEAD_LETTER_ARGUMENTS`.
* `TOPOLOGY`: all of it as the kit takes it (`ServiceDefinition(topology=TOPOLOGY)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from services.platform.core.contracts import Binding, ExchangeSpec, QueueSpec, Topology

EXCHANGES: tuple[ExchangeSpec, ...] = (
{exchanges})

QUEUES: tuple[QueueSpec, ...] = (
{queues})

DEAD_LETTER_ARGUMENTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({{
{dead}}})
"""Arguments of every dead-letter queue, by name (declared durable)."""

TOPOLOGY = Topology(EXCHANGES, QUEUES, DEAD_LETTER_ARGUMENTS)


def queues_for(service: str) -> tuple[QueueSpec, ...]:
    """The queues a service consumes from (empty when it consumes nothing)."""
    return tuple(queue for queue in QUEUES if queue.service == service)


def queue_named(name: str) -> QueueSpec:
    """The consuming queue called `name` (KeyError when there is none)."""
    for queue in QUEUES:
        if queue.name == name:
            return queue
    raise KeyError(name)
'''


def _queue_spec(queue: Queue) -> str:
    bindings = "".join(
        f"Binding(exchange={exchange!r}, routing_key={key!r})," for exchange, key in queue.bindings
    )
    return (
        "    QueueSpec(\n"
        f"        name={queue.name!r},\n"
        f"        service={queue.service!r},\n"
        f"        arguments=MappingProxyType({py_literal(queue.arguments)}),\n"
        f"        bindings=({bindings}),\n"
        f"        dead_letter_exchange={queue.dead_letter.exchange!r},\n"
        f"        dead_letter_queue={queue.dead_letter.name!r},\n"
        f"        dead_letter_routing_key={queue.dead_letter.routing_key!r},\n"
        f"        consumes={py_literal(queue.consumes)},\n"
        f"        inbox={queue.inbox!r},\n"
        "    ),\n"
    )


def render_definitions(events: EventsDocument) -> str:
    """deploy/rabbitmq/definitions.json (RabbitMQ definitions format, vhost `/`)."""
    vhost = "/"
    exchanges = [
        {
            "name": x.name,
            "vhost": vhost,
            "type": x.type,
            "durable": x.durable,
            "auto_delete": x.auto_delete,
            "internal": False,
            "arguments": {},
        }
        for x in events.exchanges
    ]
    queues: list[JsonObject] = []
    bindings: list[JsonObject] = []
    for queue in events.queues:
        dead = queue.dead_letter
        queues.append(_definition_queue(queue.name, queue.durable, queue.arguments, vhost))
        queues.append(_definition_queue(dead.name, dead.durable, dead.arguments, vhost))
        for exchange, key in queue.bindings:
            bindings.append(_definition_binding(exchange, queue.name, key, vhost))
        bindings.append(_definition_binding(dead.exchange, dead.name, dead.routing_key, vhost))
    document = {
        "vhosts": [{"name": vhost}],
        "exchanges": exchanges,
        "queues": sorted(queues, key=lambda q: q["name"]),
        "bindings": sorted(
            bindings, key=lambda b: (b["source"], b["destination"], b["routing_key"])
        ),
    }
    return dump_json(document, sort_keys=True)


def _definition_queue(name: str, durable: bool, arguments: JsonObject, vhost: str) -> JsonObject:
    return {
        "name": name,
        "vhost": vhost,
        "durable": durable,
        "auto_delete": False,
        "arguments": dict(arguments),
    }


def _definition_binding(source: str, queue: str, routing_key: str, vhost: str) -> JsonObject:
    return {
        "source": source,
        "vhost": vhost,
        "destination": queue,
        "destination_type": "queue",
        "routing_key": routing_key,
        "arguments": {},
    }

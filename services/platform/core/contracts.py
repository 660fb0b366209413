"""Shapes shared by the generated code and the platform kit.

`tools/codegen` writes modules in `generated/` that instantiate these classes from the
OpenAPI and AsyncAPI documents; the kit reads them at start-up. Keep them plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import UUID

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event of the AsyncAPI document: where it goes and what its payload is."""

    name: str  # routing key and event name, e.g. "auth.user.registered"
    version: str  # envelope event_version, e.g. "1.0"
    exchange: str  # e.g. "auth.events"
    routing_key: str
    producer: str  # service that sends it, e.g. "auth"
    payload_model: type[BaseModel]
    persistent: bool = True  # delivery_mode 2
    priority: int | None = None
    ttl_ms: int | None = None


class EventSink(Protocol):
    """Where a use case records the events its transaction produces (the outbox). `emit`
    returns the event's id: what a later event of the same conversation names as its cause."""

    def emit(self, spec: EventSpec, payload: BaseModel) -> UUID: ...


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: Literal["topic", "direct", "fanout", "headers"]
    durable: bool = True


@dataclass(frozen=True, slots=True)
class Binding:
    exchange: str
    routing_key: str  # a topic pattern, e.g. "auth.user.*"


InboxKind = Literal["database", "redis"]
"""How a consuming service remembers the events it handled: the inbox table of its database
(its consumers get the unit of work), or Redis `SET NX` for a service without a database (its
consumers get the service context). `x-erp-queue.inbox` in the AsyncAPI document."""


def consumer_method(event_name: str) -> str:
    """The method of a service's consumers object that handles an event (also the name the
    generated consumer Protocols use): "sales.order.created" → "on_sales_order_created"."""
    return "on_" + event_name.replace(".", "_")


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A consuming service's queue with its arguments, bindings and dead-letter queue."""

    name: str  # e.g. "notification.queue"
    service: str  # consuming service
    arguments: Mapping[str, Any]  # x-queue-type, x-dead-letter-exchange, x-max-priority, ...
    bindings: tuple[Binding, ...]
    dead_letter_exchange: str  # "dlx"
    dead_letter_queue: str  # e.g. "notification.dlq"
    dead_letter_routing_key: str  # e.g. "notification.dlq"
    consumes: tuple[str, ...] = field(default=())  # event names its service handles
    inbox: InboxKind = "database"


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
"""The operation keys of an OpenAPI path item (lower case, as the document spells them)."""

KIT_OPERATIONS = frozenset({"get_health", "get_liveness", "get_readiness", "get_metrics"})
"""OperationIds every service's document declares and the kit serves (not its handlers)."""

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IF_MATCH_HEADER = "If-Match"

JsonSchema = Mapping[str, Any]
"""A JSON Schema (draft 4) as codegen writes it: OpenAPI's `nullable` already turned into a
`"null"` type, `$ref`s pointing into the operations module's `SCHEMAS` under `#/definitions/`."""


@dataclass(frozen=True, slots=True)
class ParameterInfo:
    name: str  # python name the handler receives (snake_case; "body" for the body)
    location: Literal["path", "query", "header", "body"]
    required: bool
    wire_name: str = ""  # as the request spells it: "Idempotency-Key", "per_page"
    schema: JsonSchema = field(default_factory=dict)  # of the value; may hold a "default"


@dataclass(frozen=True, slots=True)
class BodyInfo:
    """An operation's JSON request body: validated against `schema`, parsed into `model`."""

    required: bool
    schema: JsonSchema
    model: type[BaseModel]
    # Dotted paths of the body's `x-erp-secret` properties (a password): never part of what the
    # kit stores, not even hashed into an idempotency fingerprint.
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """An operation's one success response."""

    status: int
    model: type[BaseModel] | None  # None: no body (204)
    schema: JsonSchema | None = None
    headers: tuple[str, ...] = ()  # declared response headers, e.g. ("Location", "ETag")
    content_type: str | None = "application/json"
    # Dotted paths of the body's `x-erp-secret` properties: shown once, never stored/replayed.
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OperationInfo:
    """One OpenAPI operation as the kit needs it at run time."""

    operation_id: str
    method: str  # upper case
    path: str  # template, e.g. "/api/v1/users/{user_id}"
    permissions: tuple[str, ...]  # from x-permissions; () = any authenticated caller
    public: bool  # security: []
    parameters: tuple[ParameterInfo, ...]
    body: BodyInfo | None = None
    success: ResponseInfo | None = None
    # The created resource's URL for a 201 that declares `Location`: its path template with
    # `{id}` standing for the response model's `id` (the sibling GET path, or x-location).
    location: str | None = None

    @property
    def idempotent(self) -> bool:
        """Whether the operation takes an Idempotency-Key (the kit then runs it at most once)."""
        return any(p.wire_name == IDEMPOTENCY_KEY_HEADER for p in self.parameters)

    @property
    def writes(self) -> bool:
        """Whether the operation may change state (its handler gets a unit of work)."""
        return self.method not in ("GET", "HEAD", "OPTIONS")


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more words."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


def binding_matches(exchange_type: str, pattern: str, routing_key: str) -> bool:
    if exchange_type == "topic":
        return topic_matches(pattern, routing_key)
    if exchange_type == "fanout":
        return True
    return pattern == routing_key  # direct (headers exchanges are not used)


@dataclass(frozen=True)
class Topology:
    """Exchanges and queues to declare (normally generated.topology)."""

    exchanges: tuple[ExchangeSpec, ...]
    queues: tuple[QueueSpec, ...]
    # Arguments of each dead-letter queue by name (the AsyncAPI document states them).
    dead_letter_arguments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Topology:
        """No exchanges and no queues (a service that neither publishes nor consumes)."""
        return cls((), ())

    def dead_letter_queue_arguments(self, queue: QueueSpec) -> dict[str, Any]:
        """A dead-letter queue's arguments; quorum, like every queue, when none are given."""
        return dict(
            self.dead_letter_arguments.get(queue.dead_letter_queue, {"x-queue-type": "quorum"})
        )

    def queues_for(self, service: str) -> tuple[QueueSpec, ...]:
        return tuple(queue for queue in self.queues if queue.service == service)

    def all_exchanges(self) -> tuple[ExchangeSpec, ...]:
        """The declared exchanges plus every dead-letter exchange a queue names (direct)."""
        names = {exchange.name for exchange in self.exchanges}
        extra = {
            queue.dead_letter_exchange: ExchangeSpec(queue.dead_letter_exchange, "direct")
            for queue in self.queues
            if queue.dead_letter_exchange not in names
        }
        return self.exchanges + tuple(extra.values())

    def is_routed(self, exchange: str, routing_key: str) -> bool:
        """Whether some queue of the topology receives this routing key on this exchange."""
        types = {spec.name: spec.type for spec in self.all_exchanges()}
        exchange_type = types.get(exchange, "topic")
        for queue in self.queues:
            if exchange == queue.dead_letter_exchange and (
                routing_key == queue.dead_letter_routing_key
            ):
                return True
            for binding in queue.bindings:
                if binding.exchange == exchange and binding_matches(
                    exchange_type, binding.routing_key, routing_key
                ):
                    return True
        return False

"""Shapes shared by the generated code and the platform kit.

`tools/codegen` writes modules in `generated/` that instantiate these classes from the
OpenAPI and AsyncAPI documents; the kit reads them at start-up. Keep them plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
    """Where a use case records the events its transaction produces (the outbox)."""

    def emit(self, spec: EventSpec, payload: BaseModel) -> None: ...


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: Literal["topic", "direct", "fanout", "headers"]
    durable: bool = True


@dataclass(frozen=True, slots=True)
class Binding:
    exchange: str
    routing_key: str  # a topic pattern, e.g. "auth.user.*"


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


@dataclass(frozen=True, slots=True)
class ParameterInfo:
    name: str  # python name as connexion passes it (snake_case; "body" for the body)
    location: Literal["path", "query", "header", "body"]
    required: bool


@dataclass(frozen=True, slots=True)
class OperationInfo:
    """One OpenAPI operation as the kit needs it at run time."""

    operation_id: str
    method: str  # upper case
    path: str  # template, e.g. "/api/v1/users/{user_id}"
    permissions: tuple[str, ...]  # from x-permissions; () = any authenticated caller
    public: bool  # security: []
    parameters: tuple[ParameterInfo, ...]

"""A service as the kit runs it: what it declares (`ServiceDefinition`) and what its handlers,
consumers and jobs see while it runs (`ServiceContext`, `current_context()`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import httpx
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import MetaData

from services.platform.core.contracts import EventSpec, JsonSchema, OperationInfo, Topology
from services.platform.core.settings import Settings
from services.platform.http.security import ApiKeyVerifier, KeySource
from services.platform.messaging.bus import MessageBus
from services.platform.persistence.db import Database
from services.platform.persistence.redis import JsonCache, Keys
from services.platform.persistence.uow import UnitOfWork

StartupHook: TypeAlias = Callable[["ServiceContext"], Awaitable[None]]


@dataclass(frozen=True)
class PeriodicJob:
    """A coroutine run every `every_seconds` while the service runs (errors are logged)."""

    name: str
    every_seconds: float
    run: Callable[[ServiceContext], Awaitable[None]]
    run_at_start: bool = False  # True: first run right after start-up, not one period later


@dataclass(frozen=True)
class ServiceDefinition:
    """A service as the kit runs it.

    `metadata`/`migrations` are None for a service without a database (notification): the
    runtime then creates no database, runs no migrations and starts no outbox relay.
    """

    name: str
    default_port: int
    handlers: str  # module path of the handler functions, e.g. "services.auth.handlers"
    operations: Mapping[str, OperationInfo]
    # The JSON Schema document whose `definitions` the operations' schemas refer to (SCHEMAS).
    schemas: Mapping[str, Any] = field(default_factory=dict)
    metadata: MetaData | None = None
    migrations: Path | None = None
    # The object (normally the service's consumers module) with one coroutine per consumed
    # event, `on_<event name, dots as underscores>`, typed by the generated consumer Protocol
    # (generated/events/consumers.py); None for a service that consumes nothing.
    consumers: object | None = None
    on_startup: Sequence[StartupHook] = ()
    periodic: Sequence[PeriodicJob] = ()
    # The platform's event contracts (generated from the AsyncAPI document).
    topology: Topology = field(default_factory=Topology.empty)
    events: Mapping[str, EventSpec] = field(default_factory=dict)  # event name -> spec
    envelopes: Mapping[str, type[BaseModel]] = field(default_factory=dict)  # whole-message models
    # The JSON Schema of each event's whole envelope: consumers check messages against it.
    envelope_schemas: Mapping[str, JsonSchema] = field(default_factory=dict)
    api_keys: Callable[[ServiceContext], ApiKeyVerifier] | None = None
    signing_keys: Callable[[ServiceContext], KeySource] | None = None  # None → JWKS over HTTP

    @property
    def has_database(self) -> bool:
        return self.migrations is not None


@dataclass(eq=False)
class ServiceContext:
    definition: ServiceDefinition
    settings: Settings
    # Always present; for a service without a database (notification) it is never connected.
    database: Database
    redis: Redis
    keys: Keys
    bus: MessageBus
    http: httpx.AsyncClient
    # Set after every commit that wrote outbox rows; the relay waits on it (and polls anyway).
    outbox_signal: asyncio.Event = field(default_factory=asyncio.Event)
    # Objects a service builds at start-up (its on_startup hooks put them here).
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def has_database(self) -> bool:
        return self.definition.has_database

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"services.{self.name}")

    @property
    def cache(self) -> JsonCache:
        return JsonCache(self.redis, self.keys)

    def unit_of_work(self) -> UnitOfWork:
        """A transaction on the service's database that also writes the outbox and inbox."""
        if not self.has_database:
            raise RuntimeError(f"service {self.name} has no database")
        return UnitOfWork(self.database, service=self.name, on_commit=self.outbox_signal.set)


_current: ContextVar[ServiceContext | None] = ContextVar("erp_service_context", default=None)
_running: dict[str, ServiceContext] = {}


def current_context() -> ServiceContext:
    """The context of the service this code runs in.

    Tasks started by `run_service` and requests bound with `use_context` see their own service;
    otherwise, when exactly one service runs in the process, that one.
    """
    bound = _current.get()
    if bound is not None:
        return bound
    if len(_running) == 1:
        return next(iter(_running.values()))
    if not _running:
        raise RuntimeError(
            "no service is running: current_context() works inside run_service(...) "
            "(the app's lifespan, `erp serve`, or a test using it)"
        )
    raise RuntimeError(
        f"several services run in this process ({', '.join(sorted(_running))}): "
        "bind the request's one with use_context(ctx)"
    )


@contextmanager
def use_context(ctx: ServiceContext) -> Iterator[ServiceContext]:
    """Make `ctx` the current context in this task (and tasks it starts) for the block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def register(ctx: ServiceContext) -> None:
    if ctx.name in _running:
        raise RuntimeError(f"service {ctx.name} is already running in this process")
    _running[ctx.name] = ctx


def unregister(ctx: ServiceContext) -> None:
    if _running.get(ctx.name) is ctx:
        del _running[ctx.name]

"""What a service tells the kit about itself: one ServiceDefinition per service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import BaseModel
from sqlalchemy import MetaData

from services.platform.contracts import OperationInfo

if TYPE_CHECKING:
    from services.platform.context import ServiceContext
    from services.platform.security import ApiKeyVerifier, KeySource
    from services.platform.uow import UnitOfWork

Consumer: TypeAlias = Callable[
    ["ServiceContext", "UnitOfWork", dict[str, Any], BaseModel], Awaitable[None]
]
"""An event handler: `async def handle(ctx, uow, envelope, payload) -> None`. It must not commit;
the consumer wrapper commits the unit of work together with the inbox row."""

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
    metadata: MetaData | None = None
    migrations: Path | None = None
    consumers: Mapping[str, Consumer] = field(default_factory=dict)  # event name -> handler
    on_startup: Sequence[StartupHook] = ()
    periodic: Sequence[PeriodicJob] = ()
    api_keys: Callable[[ServiceContext], ApiKeyVerifier] | None = None
    signing_keys: Callable[[ServiceContext], KeySource] | None = None  # None → JWKS over HTTP

    @property
    def has_database(self) -> bool:
        return self.migrations is not None

"""Service contexts put together by hand, for the kit's tests that drive one part (the relay,
the consumers, the unit of work) without `run_service` starting the rest; and what those tests
do with one (emit events, read the outbox)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlmodel import col, select

from services.platform.core.contracts import EventSpec
from services.platform.core.settings import Settings
from services.platform.messaging.bus import MessageBus
from services.platform.persistence.db import Database, prepare_database
from services.platform.persistence.redis import Keys, connect_redis
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.service import ServiceContext, ServiceDefinition


@asynccontextmanager
async def migrated_database(
    definition: ServiceDefinition, settings: Settings
) -> AsyncIterator[Database]:
    """The service's database, created and migrated if need be; disposed of at the end."""
    await prepare_database(definition.migrations, settings.database_url)
    database = Database(settings)
    try:
        yield database
    finally:
        await database.dispose()


@asynccontextmanager
async def service_context(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    bus: MessageBus,
    database: Database | None = None,
    redis: Redis | None = None,
) -> AsyncIterator[ServiceContext]:
    """A context on the caller's bus (the caller starts and stops it) and database (else one of
    `settings`, disposed of at the end); Redis is `settings`' (closed at the end) unless given."""
    async with AsyncExitStack() as stack:
        if database is None:
            database = Database(settings)
            stack.push_async_callback(database.dispose)
        if redis is None:
            redis = connect_redis(settings)
            stack.push_async_callback(redis.aclose)
        http = await stack.enter_async_context(httpx.AsyncClient())
        yield ServiceContext(
            definition=definition,
            settings=settings,
            database=database,
            redis=redis,
            keys=Keys(settings.redis_prefix),
            bus=bus,
            http=http,
        )


async def emit(ctx: ServiceContext, events: Iterable[tuple[EventSpec, BaseModel]]) -> list[str]:
    """Commit `events` in one unit of work, as a command does; their event ids."""
    async with ctx.unit_of_work() as uow:
        for spec, payload in events:
            uow.emit(spec, payload)
        await uow.commit()
    return [envelope["event_id"] for envelope in uow.emitted]


async def outbox_rows(ctx: ServiceContext) -> list[OutboxMessage]:
    """The whole outbox, oldest first."""
    async with ctx.database.session() as session:
        statement = select(OutboxMessage).order_by(col(OutboxMessage.id))
        return list((await session.scalars(statement)).all())

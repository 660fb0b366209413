"""Start and stop one service: database, Redis, broker, relay, consumers and periodic jobs.

`run_service` is an async context manager, so the same code runs a service under the app's
lifespan (`create_app`), under `erp` commands and in tests without HTTP:

    async with run_service(definition, settings) as ctx:
        ...

Start-up order: database (created if missing, migrated) → Redis → broker (declares the
topology) → on_startup hooks → outbox relay → consumers → periodic jobs. Shutdown runs the
other way round; a failure during start-up tears down what was already started and names the
step that failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.platform.core.settings import Settings
from services.platform.messaging.bus import create_bus
from services.platform.persistence.db import Database, prepare_database
from services.platform.persistence.redis import Keys, connect_redis
from services.platform.runtime import service as context_module
from services.platform.runtime.consumers import start_consumers
from services.platform.runtime.jobs import kit_jobs
from services.platform.runtime.relay import OutboxRelay
from services.platform.runtime.service import (
    PeriodicJob,
    ServiceContext,
    ServiceDefinition,
    use_context,
)

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A service could not start; the message names the step and the cause."""


@contextmanager
def _step(service: str, what: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        raise StartupError(f"{service}: {what} failed: {error}") from error


@asynccontextmanager
async def run_service(
    definition: ServiceDefinition, settings: Settings
) -> AsyncIterator[ServiceContext]:
    name = definition.name
    async with AsyncExitStack() as stack:
        database = Database(settings)
        stack.push_async_callback(database.dispose)
        if definition.has_database:
            with _step(name, "creating and migrating the database"):
                await prepare_database(definition.migrations, settings.database_url)
            await database.open()

        redis = connect_redis(settings)
        stack.push_async_callback(redis.aclose)
        with _step(name, f"connecting to Redis at {settings.redis_url or 'embedded'}"):
            await redis.ping()

        bus = create_bus(settings, definition.topology)
        with _step(name, f"connecting to RabbitMQ at {_safe(settings.amqp_url)}"):
            await bus.start()
        stack.push_async_callback(bus.stop)

        http = httpx.AsyncClient(timeout=10.0)
        stack.push_async_callback(http.aclose)

        ctx = ServiceContext(
            definition=definition,
            settings=settings,
            database=database,
            redis=redis,
            keys=Keys(settings.redis_prefix),
            bus=bus,
            http=http,
        )
        context_module.register(ctx)
        stack.callback(context_module.unregister, ctx)

        with use_context(ctx):
            for hook in definition.on_startup:
                with _step(name, f"start-up hook {getattr(hook, '__name__', hook)!r}"):
                    await hook(ctx)

        tasks = _Tasks(name)
        stack.push_async_callback(tasks.cancel_all)  # runs before bus.stop and the rest
        # Tasks copy the context they are created in: bound here, they see this service.
        with use_context(ctx):
            if definition.has_database:
                tasks.start("outbox-relay", OutboxRelay(ctx).run())
            with _step(name, "starting the consumers"):
                await start_consumers(ctx)
            for job in [*definition.periodic, *kit_jobs(ctx)]:
                tasks.start(f"periodic:{job.name}", _periodic(ctx, job))

        log.info("service %s started", name, extra={"service": name})
        yield ctx
        log.info("service %s stopping", name, extra={"service": name})


class _Tasks:
    """Background tasks of one service; cancelled together at shutdown."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine, name=f"{self.service}:{name}")
        task.add_done_callback(self._report)
        self.tasks.append(task)

    def _report(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s died", task.get_name(), exc_info=task.exception())

    async def cancel_all(self) -> None:
        for task in reversed(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _periodic(ctx: ServiceContext, job: PeriodicJob) -> None:
    """Run `job` every period; with several replicas, one of them per period (a Redis lease)."""
    lease_key = ctx.keys(ctx.name, "jobs", job.name)
    lease_ms = max(1, int(job.every_seconds * 900))  # 90 %: free again by the next tick
    holder = f"{socket.gethostname()}:{os.getpid()}"
    if not job.run_at_start:
        await asyncio.sleep(job.every_seconds)
    while True:
        try:
            if await ctx.redis.set(lease_key, holder, nx=True, px=lease_ms):
                await job.run(ctx)
        except Exception:
            ctx.log.exception("periodic job %s failed", job.name)
        _stop_if_cancelled()
        await asyncio.sleep(job.every_seconds)


def _stop_if_cancelled() -> None:
    """A job run that swallowed its cancellation (a library catching CancelledError while it
    cleaned up) would leave the task to sleep a whole period more and hold the shutdown."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _safe(url: str | None) -> str:
    """A URL for messages, without its password."""
    if url is None:
        return "embedded"
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url

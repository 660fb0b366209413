"""Services in process, in embedded mode: a SQLite file, the in-process broker and the fakeredis
stand-in, as `erp up` runs them without servers — for tests of commands, consumers and routes
that take milliseconds (the fake unit of work of "Architecture Patterns with Python", with the
real one on a real, throwaway database).

    async def test_something(embedded: StartEmbedded) -> None:
        inventory = await embedded(definition)           # run_service(...) until the test ends
        async with inventory.ctx.unit_of_work() as uow:  # the service's own unit of work
            ...
        inventory = await embedded(definition, http=True)
        await inventory.http.get("/api/v1/products")     # create_app(...) over ASGI, same loop

The `embedded` fixture gives each test a broker and a Redis of its own (the process-wide ones
of embedded mode are swapped for fresh ones) and its own data directory (`tmp_path`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fakeredis
import httpx
import pytest

from services.platform.core.settings import Settings, load_settings
from services.platform.messaging import bus as bus_module
from services.platform.persistence import redis as redis_module
from services.platform.persistence.db import prepare_database
from services.platform.runtime.app import create_app
from services.platform.runtime.runner import run_service
from services.platform.runtime.service import ServiceContext, ServiceDefinition

SQLITE = "sqlite+aiosqlite:///"
# Nothing listens there: a service that fetches auth's keys in the background just keeps trying.
NO_AUTH = "http://127.0.0.1:9"


def embedded_settings(
    service: str, data_dir: Path, env: Mapping[str, str] | None = None, **changes: Any
) -> Settings:
    """The settings `erp up` gives `service` in embedded mode with its data in `data_dir`
    (read by the real loader from these variables only, never the caller's environment);
    `changes` replace fields afterwards."""
    settings = load_settings(
        service,
        0,
        {
            "ERP_EMBEDDED": "1",
            "ERP_DATA_DIR": str(data_dir),
            "ERP_REDIS_PREFIX": f"test:{service}:",
            "ERP_RETRY_DELAYS": "0,0.01,0.02",
            "ERP_AUTH_URL": NO_AUTH,
            **(env or {}),
        },
    )
    return dataclasses.replace(settings, **changes)


@dataclass
class EmbeddedService:
    """A service running in this test's event loop."""

    ctx: ServiceContext
    _http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """The service's API over ASGI (started with `http=True`)."""
        assert self._http is not None, "start the service with embedded(definition, http=True)"
        return self._http


class StartEmbedded(Protocol):
    def __call__(
        self, definition: ServiceDefinition, *, http: bool = False, **settings: Any
    ) -> Awaitable[EmbeddedService]: ...


@asynccontextmanager
async def embedded_service(
    definition: ServiceDefinition, settings: Settings, *, http: bool = False
) -> AsyncIterator[EmbeddedService]:
    """`run_service(definition, settings)`, and with `http` its app on the running context."""
    async with run_service(definition, settings) as ctx:
        if not http:
            yield EmbeddedService(ctx)
            return

        @asynccontextmanager
        async def adopt() -> AsyncIterator[ServiceContext]:
            yield ctx  # the app serves the context already running; it neither starts nor stops it

        app = create_app(definition, settings, lifespan=adopt)
        async with (
            lifespan(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=f"http://{definition.name}.test"
            ) as client,
        ):
            yield EmbeddedService(ctx, client)


class MigratedDatabases:
    """SQLite files migrated once per run and copied for each test: a copy is at head already,
    so the service's start-up only checks it (milliseconds instead of a whole migration)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.templates: dict[Path, Path] = {}

    async def copy(self, definition: ServiceDefinition, settings: Settings) -> None:
        if definition.migrations is None or not settings.database_url.startswith(SQLITE):
            return
        template = self.templates.get(definition.migrations)
        if template is None:
            template = self.root / f"{len(self.templates)}-{definition.name}.db"
            await prepare_database(definition.migrations, f"{SQLITE}{template}")
            self.templates[definition.migrations] = template
        shutil.copyfile(template, settings.database_url.removeprefix(SQLITE))


def fresh_embedded_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new in-process broker and Redis for what starts after this (embedded mode keeps one of
    each per process, shared by its services as `erp up` shares them)."""
    monkeypatch.setattr(bus_module, "_routers", {})
    monkeypatch.setattr(redis_module, "_EMBEDDED_SERVER", fakeredis.FakeServer())


ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]],
    Awaitable[None],
]


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """An ASGI app's lifespan in this loop: started on entry, shut down on exit (httpx's
    ASGITransport sends requests only)."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(message: dict[str, Any]) -> None:
        await from_app.put(message)

    async def run() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, to_app.get, send)

    running = asyncio.create_task(run())

    async def answer(expected: str) -> None:
        reply = asyncio.create_task(from_app.get())
        await asyncio.wait({reply, running}, return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            await running  # raises what the app raised
            raise RuntimeError(f"the app ended its lifespan before {expected}")
        message = reply.result()
        if message["type"] != expected:
            raise RuntimeError(f"{message['type']}: {message.get('message', '')}")

    await to_app.put({"type": "lifespan.startup"})
    await answer("lifespan.startup.complete")
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await answer("lifespan.shutdown.complete")
        await running

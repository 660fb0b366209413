"""The services that exist, by name, loaded lazily so one service's import never costs another."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import import_module

from services.platform import ServiceContext, ServiceDefinition, Settings, run_service

# Start order of `erp up`: auth first, since every other service fetches its JWKS.
SERVICES: dict[str, str] = {
    "auth": "services.auth.service",
    "inventory": "services.inventory.service",
    "sales": "services.sales.service",
    "logistics": "services.logistics.service",
    "financial": "services.financial.service",
    "notification": "services.notification.service",
}


def load_definition(name: str) -> ServiceDefinition:
    try:
        module_path = SERVICES[name]
    except KeyError:
        known = ", ".join(SERVICES)
        raise SystemExit(f"unknown service {name!r}; known services: {known}") from None
    definition: ServiceDefinition = import_module(module_path).definition
    return definition


# The demo data set of each service (docs/adr/0008-docs-that-work.md): the rows the spec's
# examples name. Embedded `erp up` loads it; on real servers only `erp demo seed` does.
DEMO_DATA: dict[str, str] = {
    "auth": "services.auth.demo",
    "inventory": "services.inventory.demo",
    "sales": "services.sales.demo",
    "logistics": "services.logistics.demo",
    "financial": "services.financial.demo",
    "notification": "services.notification.demo",
}


def load_demo(name: str) -> Callable[[ServiceContext], Awaitable[None]]:
    seed: Callable[[ServiceContext], Awaitable[None]] = import_module(DEMO_DATA[name]).seed_demo
    return seed


@asynccontextmanager
async def with_demo_data(
    definition: ServiceDefinition, settings: Settings
) -> AsyncIterator[ServiceContext]:
    """`run_service(definition, settings)` with the demo data set loaded once it has started."""
    async with run_service(definition, settings) as ctx:
        await load_demo(definition.name)(ctx)
        yield ctx

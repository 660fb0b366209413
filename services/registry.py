"""The services that exist, by name, loaded lazily so one service's import never costs another."""

from __future__ import annotations

from importlib import import_module

from services.platform import ServiceDefinition

# Start order of `erp up`: auth first, since every other service fetches its JWKS.
SERVICES: dict[str, str] = {
    "auth": "services.auth.service",
    "inventory": "services.inventory.service",
}


def load_definition(name: str) -> ServiceDefinition:
    try:
        module_path = SERVICES[name]
    except KeyError:
        known = ", ".join(SERVICES)
        raise SystemExit(f"unknown service {name!r}; known services: {known}") from None
    definition: ServiceDefinition = import_module(module_path).definition
    return definition

"""The inventory service as the platform kit runs it."""

from __future__ import annotations

from pathlib import Path

import services.inventory.consumers
import services.inventory.handlers
from generated.events.consumers import InventoryConsumers
from generated.events.publishers import ENVELOPE_MODELS, EVENTS
from generated.events.schemas import ENVELOPE_SCHEMAS
from generated.inventory.operations import OPERATIONS, SCHEMAS, InventoryHandlers
from generated.topology import TOPOLOGY
from services.inventory.commands import reservations, warehouses
from services.inventory.tables import metadata
from services.platform import PeriodicJob, ServiceContext, ServiceDefinition

# Reservations live 15 minutes; checking twice a minute releases them at most ~30 s late.
EXPIRY_INTERVAL_SECONDS = 30.0


async def _expire_reservations(ctx: ServiceContext) -> None:
    await reservations.expire_reservations(ctx)


definition = ServiceDefinition(
    name="inventory",
    default_port=8002,
    handlers="services.inventory.handlers",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    topology=TOPOLOGY,
    events=EVENTS,
    envelopes=ENVELOPE_MODELS,
    envelope_schemas=ENVELOPE_SCHEMAS,
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    consumers=services.inventory.consumers,
    on_startup=[warehouses.seed_default_warehouse],
    # run_at_start: reservations that expired while the service was down go at once.
    periodic=[
        PeriodicJob(
            "reservations-expiry",
            every_seconds=EXPIRY_INTERVAL_SECONDS,
            run=_expire_reservations,
            run_at_start=True,
        )
    ],
)

# mypy proves here that the handler module has a coroutine for every operation of the spec,
# and the consumers module one for every event inventory.queue receives.
handlers_check: InventoryHandlers = services.inventory.handlers
consumers_check: InventoryConsumers = services.inventory.consumers

"""The sales service as the platform kit runs it: customers, the product replica, orders and
the saga's sales side (ADRs 0011, 0016, 0018)."""

from __future__ import annotations

from pathlib import Path

import services.sales.consumers
import services.sales.handlers
from generated.events.consumers import SalesConsumers
from generated.events.publishers import ENVELOPE_MODELS, EVENTS
from generated.events.schemas import ENVELOPE_SCHEMAS
from generated.sales.operations import OPERATIONS, SCHEMAS, SalesHandlers
from generated.topology import TOPOLOGY
from services.platform import PeriodicJob, ServiceContext, ServiceDefinition
from services.sales import catalogue
from services.sales.commands import orders
from services.sales.tables import metadata


async def _expire_stale_orders(ctx: ServiceContext) -> None:
    await orders.expire_stale_orders(ctx)


definition = ServiceDefinition(
    name="sales",
    default_port=8003,
    handlers="services.sales.handlers",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    topology=TOPOLOGY,
    events=EVENTS,
    envelopes=ENVELOPE_MODELS,
    envelope_schemas=ENVELOPE_SCHEMAS,
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    consumers=services.sales.consumers,
    on_startup=[catalogue.start_inventory_client],
    # Not at start: an order's deadline is 30 minutes, a minute late changes nothing.
    periodic=[PeriodicJob("orders-expiry", every_seconds=60.0, run=_expire_stale_orders)],
)

# mypy proves here that the handler module has a coroutine for every operation of the spec,
# and the consumers module one for every event sales.queue receives.
handlers_check: SalesHandlers = services.sales.handlers
consumers_check: SalesConsumers = services.sales.consumers

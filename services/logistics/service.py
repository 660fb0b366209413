"""The logistics service as the platform kit runs it: carriers and freight quotes (ADR 0019),
shipments, their tracking and the saga's logistics side (ADR 0020)."""

from __future__ import annotations

from pathlib import Path

import services.logistics.consumers
import services.logistics.handlers
from generated.events.consumers import LogisticsConsumers
from generated.events.publishers import ENVELOPE_MODELS, EVENTS
from generated.events.schemas import ENVELOPE_SCHEMAS
from generated.logistics.operations import OPERATIONS, SCHEMAS, LogisticsHandlers
from generated.topology import TOPOLOGY
from services.logistics import consumers, freight
from services.logistics.tables import metadata
from services.platform import ServiceDefinition

definition = ServiceDefinition(
    name="logistics",
    default_port=8004,
    handlers="services.logistics.handlers",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    topology=TOPOLOGY,
    events=EVENTS,
    envelopes=ENVELOPE_MODELS,
    envelope_schemas=ENVELOPE_SCHEMAS,
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    consumers=services.logistics.consumers,
    on_startup=[freight.start_quoter, consumers.use_warehouse],
)

# mypy proves here that the handler module has a coroutine for every operation of the spec,
# and the consumers module one for every event logistics.queue receives.
handlers_check: LogisticsHandlers = services.logistics.handlers
consumers_check: LogisticsConsumers = services.logistics.consumers

"""The financial service as the platform kit runs it."""

from __future__ import annotations

from pathlib import Path

import services.financial.consumers
import services.financial.handlers
from generated.events.consumers import FinancialConsumers
from generated.events.publishers import ENVELOPE_MODELS, EVENTS
from generated.events.schemas import ENVELOPE_SCHEMAS
from generated.financial.operations import OPERATIONS, SCHEMAS, FinancialHandlers
from generated.topology import TOPOLOGY
from services.financial.issuer import load_into as load_issuer
from services.financial.jobs import ACCOUNTS_OVERDUE, PAYMENT_RECOVERY
from services.financial.tables import metadata
from services.platform import ServiceDefinition

definition = ServiceDefinition(
    name="financial",
    default_port=8005,
    handlers="services.financial.handlers",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    topology=TOPOLOGY,
    events=EVENTS,
    envelopes=ENVELOPE_MODELS,
    envelope_schemas=ENVELOPE_SCHEMAS,
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    consumers=services.financial.consumers,
    on_startup=[load_issuer],
    periodic=[PAYMENT_RECOVERY, ACCOUNTS_OVERDUE],
)

# mypy proves here that the handler module has a coroutine for every operation of the spec,
# and the consumers module one for every event financial.queue receives.
handlers_check: FinancialHandlers = services.financial.handlers
consumers_check: FinancialConsumers = services.financial.consumers

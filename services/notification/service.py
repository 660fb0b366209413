"""The notification service as the platform kit runs it: no database (Redis only), e-mails,
webhooks and SMS about the platform's events (ADR 0021)."""

from __future__ import annotations

import services.notification.consumers
import services.notification.handlers
from generated.events.consumers import NotificationConsumers
from generated.events.publishers import ENVELOPE_MODELS, EVENTS
from generated.events.schemas import ENVELOPE_SCHEMAS
from generated.notification.operations import OPERATIONS, SCHEMAS, NotificationHandlers
from generated.topology import TOPOLOGY
from services.notification.commands.notifications import start_notifier
from services.platform import ServiceDefinition

definition = ServiceDefinition(
    name="notification",
    default_port=8006,
    handlers="services.notification.handlers",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    topology=TOPOLOGY,
    events=EVENTS,
    envelopes=ENVELOPE_MODELS,
    envelope_schemas=ENVELOPE_SCHEMAS,
    # No database: the kit dedupes events with Redis SET NX and gives consumers the context.
    metadata=None,
    migrations=None,
    consumers=services.notification.consumers,
    on_startup=[start_notifier],
)

# mypy proves here that the handler module has a coroutine for every operation of the spec,
# and the consumers module one for every event notification.queue receives.
handlers_check: NotificationHandlers = services.notification.handlers
consumers_check: NotificationConsumers = services.notification.consumers

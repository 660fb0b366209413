"""The auth service as the platform kit runs it."""

from __future__ import annotations

from pathlib import Path

import services.auth.handlers
from generated.auth.operations import OPERATIONS, SCHEMAS, AuthHandlers
from generated.events.publishers import ENVELOPE_MODELS, EVENTS
from generated.events.schemas import ENVELOPE_SCHEMAS
from generated.topology import TOPOLOGY
from services.auth import tokens
from services.auth.commands import api_keys, password_resets, roles
from services.auth.tables import metadata
from services.platform import (
    ApiKeyVerifier,
    KeySource,
    PeriodicJob,
    ServiceContext,
    ServiceDefinition,
)


def _api_keys(ctx: ServiceContext) -> ApiKeyVerifier:
    return api_keys.DatabaseApiKeyVerifier(ctx)


def _signing_keys(ctx: ServiceContext) -> KeySource:
    # Auth verifies its own tokens with the keys in its database, not over HTTP.
    return tokens.signing_keys(ctx)


definition = ServiceDefinition(
    name="auth",
    default_port=8001,
    handlers="services.auth.handlers",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    topology=TOPOLOGY,
    events=EVENTS,
    envelopes=ENVELOPE_MODELS,
    envelope_schemas=ENVELOPE_SCHEMAS,
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    on_startup=[
        roles.seed_roles_and_permissions,
        tokens.start_signing_keys,
        api_keys.publish_api_keys,
    ],
    periodic=[
        PeriodicJob("publish-api-keys", every_seconds=30, run=api_keys.publish_api_keys),
        PeriodicJob(
            "password-reset-emails",
            every_seconds=1,
            run=password_resets.send_requested_resets,
            run_at_start=True,
        ),
    ],
    api_keys=_api_keys,
    signing_keys=_signing_keys,
)

# mypy proves here that the handler module has a coroutine for every operation of the spec.
handlers_check: AuthHandlers = services.auth.handlers

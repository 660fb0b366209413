"""The platform kit: what every service shares (docs/kit-api.md, docs/adr/0001-foundation.md).

Services import from here only. Inside, the kit is layered, each layer importing only those
below it (enforced by `tests/platform/test_layers.py` with import-linter):

    runtime      the service definition and context, the runner, the app factory, consumers,
                 the outbox relay, periodic jobs, rate limits
    http         routes, validation, responses, problem rendering, security, idempotency,
                 versioning, metrics, the access log
    persistence  database, kit tables, migrations, unit of work, paging, Redis
    messaging    the bus (RabbitMQ, in-process), dead letters
    core         contracts, rules, ids, settings, problems, the request scope, logs
"""

from services.platform.core.breakers import windowed_breaker
from services.platform.core.contracts import EventSink, EventSpec, OperationInfo, Topology
from services.platform.core.documents import Document, DocumentType, parse_document
from services.platform.core.emails import normalise_email, stored_email
from services.platform.core.ids import api_key_digest, parse_uuid
from services.platform.core.logs import configure_logging
from services.platform.core.problems import (
    Problem,
    check_rules,
    resource_not_found,
    unauthorized,
    unprocessable,
    validation_problem,
)
from services.platform.core.rules import FieldError, utc_now
from services.platform.core.scope import (
    Caller,
    Principal,
    current_principal,
    in_conversation,
    on_behalf_of,
    require_principal,
)
from services.platform.core.settings import (
    Settings,
    SettingsError,
    SettingsReader,
    WarehouseAddress,
    detect_embedded,
    load_settings,
)
from services.platform.http.idempotency import idempotent
from services.platform.http.responses import Reply
from services.platform.http.security import (
    ACCESS_TOKEN_TYPE,
    TOKEN_LEEWAY,
    ApiKeyVerifier,
    KeySource,
    PublishedApiKey,
)
from services.platform.http.versioning import etag, require_if_match
from services.platform.persistence.alembic_env import run_migrations
from services.platform.persistence.db import (
    Database,
    affected_rows,
    insert_ignoring_conflicts,
    prepare_database,
    take_next_number,
)
from services.platform.persistence.migrations import kit_tables_downgrade, kit_tables_upgrade
from services.platform.persistence.pagination import (
    KeysetPage,
    Page,
    PageMeta,
    keyset_of,
    newest_first,
    page_of,
    paginate,
)
from services.platform.persistence.redis import JsonCache
from services.platform.persistence.search import LIKE_ESCAPE, like_pattern
from services.platform.persistence.sql import Sql
from services.platform.persistence.tables import Amount, UtcDateTime, format_amount, utc_timestamp
from services.platform.persistence.uow import UnitOfWork, flush_unique, rfc3339
from services.platform.runtime.app import create_app
from services.platform.runtime.calls import Call, WriteCall
from services.platform.runtime.consumers import DeadLetter
from services.platform.runtime.ratelimit import rate_limit, refund_rate_limit
from services.platform.runtime.runner import run_service
from services.platform.runtime.service import (
    PeriodicJob,
    ServiceContext,
    ServiceDefinition,
    current_context,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "LIKE_ESCAPE",
    "TOKEN_LEEWAY",
    "Amount",
    "ApiKeyVerifier",
    "Call",
    "Caller",
    "Database",
    "DeadLetter",
    "Document",
    "DocumentType",
    "EventSink",
    "EventSpec",
    "FieldError",
    "JsonCache",
    "KeySource",
    "KeysetPage",
    "OperationInfo",
    "Page",
    "PageMeta",
    "PeriodicJob",
    "Principal",
    "Problem",
    "PublishedApiKey",
    "Reply",
    "ServiceContext",
    "ServiceDefinition",
    "Settings",
    "SettingsError",
    "SettingsReader",
    "Sql",
    "Topology",
    "UnitOfWork",
    "UtcDateTime",
    "WarehouseAddress",
    "WriteCall",
    "affected_rows",
    "api_key_digest",
    "check_rules",
    "configure_logging",
    "create_app",
    "current_context",
    "current_principal",
    "detect_embedded",
    "etag",
    "flush_unique",
    "format_amount",
    "idempotent",
    "in_conversation",
    "insert_ignoring_conflicts",
    "keyset_of",
    "kit_tables_downgrade",
    "kit_tables_upgrade",
    "like_pattern",
    "load_settings",
    "newest_first",
    "normalise_email",
    "on_behalf_of",
    "page_of",
    "paginate",
    "parse_document",
    "parse_uuid",
    "prepare_database",
    "rate_limit",
    "refund_rate_limit",
    "require_if_match",
    "require_principal",
    "resource_not_found",
    "rfc3339",
    "run_migrations",
    "run_service",
    "stored_email",
    "take_next_number",
    "unauthorized",
    "unprocessable",
    "utc_now",
    "utc_timestamp",
    "validation_problem",
    "windowed_breaker",
]

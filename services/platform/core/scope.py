"""What the code in hand is doing, in context variables: the request or event's ids and the
authenticated caller.

The HTTP entry binds them per request; a consumer binds them per event (`bind`), so use cases
and the unit of work, which copies them into event envelopes, see them without being passed
them. Tasks started inside inherit them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from services.platform.core.ids import parse_uuid
from services.platform.core.problems import unauthorized

REQUEST_ID_HEADER = "X-Request-ID"
CORRELATION_ID_HEADER = "X-Correlation-ID"

request_id: ContextVar[str | None] = ContextVar("erp_request_id", default=None)
correlation_id: ContextVar[str | None] = ContextVar("erp_correlation_id", default=None)
causation_id: ContextVar[str | None] = ContextVar("erp_causation_id", default=None)
principal: ContextVar[Principal | None] = ContextVar("erp_principal", default=None)
service: ContextVar[str | None] = ContextVar("erp_service", default=None)

# A caller-supplied id is echoed into headers and logs: keep it short and free of control chars.
SAFE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user (access token) or a partner (API key)."""

    subject: str  # user id, or API key id
    kind: Literal["user", "api_key"]
    permissions: frozenset[str]
    roles: tuple[str, ...] = ()
    token_id: str | None = None  # the access token's jti
    expires_at: datetime | None = None

    @property
    def user_id(self) -> UUID | None:
        """The user behind an access token; None for a partner key."""
        return parse_uuid(self.subject) if self.kind == "user" else None

    def missing(self, required: Iterable[str]) -> tuple[str, ...]:
        """The required permissions this caller lacks, in the order given."""
        return tuple(slug for slug in required if slug not in self.permissions)


def current_principal() -> Principal | None:
    """The authenticated caller, or None on a public operation (and outside requests)."""
    return principal.get()


def require_principal() -> Principal:
    """The authenticated caller; a 401 problem when there is none."""
    found = principal.get()
    if found is None:
        raise unauthorized("Authentication is required.")
    return found


def new_id() -> str:
    return str(uuid.uuid4())


def canonical_uuid(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@contextmanager
def bind(
    *,
    request: str | None = None,
    correlation: str | None = None,
    causation: str | None = None,
    caller: Principal | None = None,
) -> Iterator[None]:
    """Set the request-scoped values for a block (consumers and tests use it outside HTTP)."""
    tokens = (
        request_id.set(request),
        correlation_id.set(correlation),
        causation_id.set(causation),
        principal.set(caller),
    )
    try:
        yield
    finally:
        principal.reset(tokens[3])
        causation_id.reset(tokens[2])
        correlation_id.reset(tokens[1])
        request_id.reset(tokens[0])


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and under which ids: what the kit hands every handler (in its `Call`)
    and what commands take to record who did what."""

    principal: Principal | None  # None on a public operation
    client_ip: str | None
    request_id: str | None
    correlation_id: str | None

    @property
    def user_id(self) -> UUID | None:
        """The user behind the request; None for a partner key or an anonymous caller."""
        return None if self.principal is None else self.principal.user_id

    @property
    def permissions(self) -> frozenset[str]:
        """The permissions the caller holds (none on a public operation)."""
        return frozenset() if self.principal is None else self.principal.permissions

    @property
    def subject(self) -> str:
        """`kind:subject` of the principal, "anonymous" without one (scopes idempotency keys)."""
        found = self.principal
        return f"{found.kind}:{found.subject}" if found is not None else "anonymous"


@contextmanager
def on_behalf_of(caller: Caller) -> Iterator[None]:
    """Run deferred work (a job finishing what a request started) under that request's ids:
    its events carry the request's correlation id, its logs the request id."""
    with bind(
        request=caller.request_id, correlation=caller.correlation_id, caller=caller.principal
    ):
        yield


@contextmanager
def in_conversation(correlation: UUID | str | None, cause: UUID | str | None) -> Iterator[None]:
    """Run deferred work (a job finishing what an event started) in that event's conversation:
    the events it emits carry `correlation` as their correlation id and `cause` (the event's
    id) as their causation id, as if the event's consumer had emitted them. None leaves that id
    unset (a new conversation, no cause)."""
    with bind(
        correlation=None if correlation is None else str(correlation),
        causation=None if cause is None else str(cause),
    ):
        yield

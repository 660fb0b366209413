"""What the current request is: its ids, its caller and the app serving it (contextvars).

`RequestContextMiddleware` (outermost in every app) reads or creates `X-Request-ID` and
`X-Correlation-ID`, binds the service's context for `current_context()`, and echoes both ids on
the response. Connexion runs a request's middlewares and handler in one task, so values set
here (and the principal set after authentication) are visible to handlers, use cases and the
unit of work, which copies them into event envelopes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.platform.context import ServiceContext, use_context
from services.platform.problems import unauthorized

if TYPE_CHECKING:
    from services.platform.security import Principal

REQUEST_ID_HEADER = "X-Request-ID"
CORRELATION_ID_HEADER = "X-Correlation-ID"

request_id: ContextVar[str | None] = ContextVar("erp_request_id", default=None)
correlation_id: ContextVar[str | None] = ContextVar("erp_correlation_id", default=None)
causation_id: ContextVar[str | None] = ContextVar("erp_causation_id", default=None)
principal: ContextVar[Principal | None] = ContextVar("erp_principal", default=None)
service: ContextVar[str | None] = ContextVar("erp_service", default=None)

# A caller-supplied id is echoed into headers and logs: keep it short and free of control chars.
_SAFE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


@dataclass(eq=False)
class AppState:
    """One app's life: its service context while the lifespan runs, and whether it is ready."""

    service: str
    version: str  # info.version of the served spec
    context: ServiceContext | None = None
    ready: bool = False


_app: ContextVar[AppState | None] = ContextVar("erp_app", default=None)


def current_principal() -> Principal | None:
    """The authenticated caller, or None on a public operation (and outside requests)."""
    return principal.get()


def require_principal() -> Principal:
    """The authenticated caller; a 401 problem when there is none."""
    found = principal.get()
    if found is None:
        raise unauthorized("Authentication is required.")
    return found


def current_app() -> AppState | None:
    """The state of the app serving the current request (None outside a request)."""
    return _app.get()


def new_id() -> str:
    return str(uuid.uuid4())


def _canonical_uuid(value: str | None) -> str | None:
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


class RequestContextMiddleware:
    """Request and correlation ids in, contextvars set, both ids echoed on the response.

    The correlation id ends up in event envelopes, whose schema makes it a UUID: a caller's
    non-UUID value is not used for it (the request id is, when it is a UUID, else a new one).
    """

    def __init__(self, app: ASGIApp, *, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        incoming = headers.get(REQUEST_ID_HEADER)
        rid = incoming if incoming is not None and _SAFE_ID.match(incoming) else new_id()
        cid = (
            _canonical_uuid(headers.get(CORRELATION_ID_HEADER)) or _canonical_uuid(rid) or new_id()
        )

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers[REQUEST_ID_HEADER] = rid
                response_headers[CORRELATION_ID_HEADER] = cid
            await send(message)

        ctx = self.state.context
        binding = use_context(ctx) if ctx is not None else nullcontext()
        app_token = _app.set(self.state)
        service_token = service.set(self.state.service)
        try:
            with binding, bind(request=rid, correlation=cid):
                await self.app(scope, receive, send_with_ids)
        finally:
            service.reset(service_token)
            _app.reset(app_token)

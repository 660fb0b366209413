"""The app serving a request and the service behind it.

`RequestContextMiddleware` (outermost in every app) reads or creates `X-Request-ID` and
`X-Correlation-ID`, binds the service's context for `current_context()` and the ids for the
unit of work and the logs, and echoes both ids on the response.
"""

from __future__ import annotations

from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.platform.core import scope as scope_vars
from services.platform.http.security import KeySource
from services.platform.runtime.service import ServiceContext, use_context


@dataclass(eq=False)
class AppState:
    """One app's life: its service context while the lifespan runs, whether it has started,
    and the keys its bearer checks use (loaded in the background after start-up)."""

    service: str
    version: str  # info.version of the served spec
    context: ServiceContext | None = None
    ready: bool = False  # started, and not shutting down
    token_keys: KeySource | None = None

    @property
    def verifies_tokens(self) -> bool:
        """True once the keys that verify access tokens are loaded (readiness needs it)."""
        return self.token_keys is not None and self.token_keys.loaded


_app: ContextVar[AppState | None] = ContextVar("erp_app", default=None)


def current_app() -> AppState | None:
    """The state of the app serving the current request (None outside a request)."""
    return _app.get()


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
        incoming = headers.get(scope_vars.REQUEST_ID_HEADER)
        rid = (
            incoming
            if incoming is not None and scope_vars.SAFE_ID.match(incoming)
            else scope_vars.new_id()
        )
        cid = (
            scope_vars.canonical_uuid(headers.get(scope_vars.CORRELATION_ID_HEADER))
            or scope_vars.canonical_uuid(rid)
            or scope_vars.new_id()
        )

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers[scope_vars.REQUEST_ID_HEADER] = rid
                response_headers[scope_vars.CORRELATION_ID_HEADER] = cid
            await send(message)

        ctx = self.state.context
        binding = use_context(ctx) if ctx is not None else nullcontext()
        app_token = _app.set(self.state)
        service_token = scope_vars.service.set(self.state.service)
        try:
            with binding, scope_vars.bind(request=rid, correlation=cid):
                await self.app(scope, receive, send_with_ids)
        finally:
            scope_vars.service.reset(service_token)
            _app.reset(app_token)

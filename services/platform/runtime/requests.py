"""The app serving a request, the service behind it, and the request's ids.

`bind_request` reads or makes `X-Request-ID` and `X-Correlation-ID`, binds them (for the unit of
work, which copies them into event envelopes, and for the logs), binds the service's context
for `current_context()`, and gives the headers that echo both ids on the response.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from starlette.types import Message, Send

from services.platform.core import scope as scope_vars
from services.platform.core.scope import Caller
from services.platform.http.security import KeySource
from services.platform.runtime.service import ServiceContext, use_context


@dataclass(eq=False)
class AppState:
    """One app's life: its service context while the lifespan runs, and whether it is ready."""

    service: str
    version: str  # info.version of the served spec
    context: ServiceContext | None = None
    ready: bool = False
    token_keys: KeySource | None = None  # what verifies access tokens, once built

    @property
    def verifies_tokens(self) -> bool:
        """True once the keys that verify access tokens are loaded (readiness needs it)."""
        return self.token_keys is not None and self.token_keys.loaded


@dataclass(frozen=True, slots=True)
class RequestIds:
    """The ids of the request in hand and how they go back to the client."""

    request_id: str
    correlation_id: str
    client_ip: str | None

    @property
    def response_headers(self) -> dict[str, str]:
        return {
            scope_vars.REQUEST_ID_HEADER: self.request_id,
            scope_vars.CORRELATION_ID_HEADER: self.correlation_id,
        }

    def caller(self) -> Caller:
        return Caller(
            principal=scope_vars.principal.get(),
            client_ip=self.client_ip,
            request_id=self.request_id,
            correlation_id=self.correlation_id,
        )

    def wrap(self, send: Send) -> Send:
        """`send` adding both ids to the response (for apps the kit delegates to)."""

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in self.response_headers.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_ids


@contextmanager
def bind_request(
    state: AppState, headers: Mapping[str, str], client_ip: str | None = None
) -> Iterator[RequestIds]:
    """Bind the request's ids and its service for the block.

    The correlation id ends up in event envelopes, whose schema makes it a UUID: a caller's
    non-UUID value is not used for it (the request id is, when it is a UUID, else a new one).
    """
    incoming = headers.get("x-request-id")
    rid = incoming if incoming is not None and scope_vars.SAFE_ID.match(incoming) else None
    rid = rid or scope_vars.new_id()
    cid = (
        scope_vars.canonical_uuid(headers.get("x-correlation-id"))
        or scope_vars.canonical_uuid(rid)
        or scope_vars.new_id()
    )
    service_token = scope_vars.service.set(state.service)
    try:
        with scope_vars.bind(request=rid, correlation=cid):
            if state.context is None:
                yield RequestIds(rid, cid, client_ip)
            else:
                with use_context(state.context):
                    yield RequestIds(rid, cid, client_ip)
    finally:
        scope_vars.service.reset(service_token)

"""The app factory: one ASGI app per service, driven by its generated `OPERATIONS` table.

    app = create_app(definition, settings)      # uvicorn.run(app, log_config=None, ...)

One pass per request, no middleware stack (docs/adr/0004-kit-v2.md says why):

1. request and correlation ids read (or made) and bound, with the service's context;
2. route: the operation for (method, path), or 404 / 405 with every allowed method;
   a CORS preflight is answered here (`http/cors.py`: from the path's operations);
3. security: bearer JWT or X-API-Key, then the operation's x-permissions (401 / 403);
4. parameters and the JSON body parsed and checked with validators compiled at start-up, the
   body turned into the operation's generated request model (400 listing every problem);
5. the handler called with a `Call` (reads) or a `WriteCall` whose unit of work the kit
   commits — under the idempotency store when the operation takes an Idempotency-Key;
6. the result rendered as the spec declares (status, ETag from `version`, Location of a created
   resource), checked against the response schema when `settings.validate_responses`;
7. any error as problem+json, CORS headers for an allowed origin; one access-log line and
   the route's metrics.

Connexion still loads the bundled document for Swagger UI (`/ui/`); `/openapi.json` serves the
bundle byte for byte.
"""

from __future__ import annotations

import asyncio
import gc
import html
import importlib
import json
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import uvicorn
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from connexion.spec import Specification
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from services.platform.core import scope as scope_vars
from services.platform.core.contracts import KIT_OPERATIONS, OperationInfo
from services.platform.core.problems import Problem
from services.platform.core.scope import Caller
from services.platform.core.settings import Settings
from services.platform.http.access_log import log_request
from services.platform.http.cors import CorsPolicy, is_preflight
from services.platform.http.errors import (
    contract_breach,
    method_not_allowed,
    not_found,
    to_problem,
)
from services.platform.http.idempotency import idempotent
from services.platform.http.metrics import RequestMetrics, get_metrics
from services.platform.http.requests import RequestParser
from services.platform.http.responses import Rendered, render, render_problem
from services.platform.http.router import Router
from services.platform.http.security import authenticate
from services.platform.http.validation import CompiledSchema
from services.platform.persistence.uow import UnitOfWork
from services.platform.runtime import health
from services.platform.runtime.authentication import Authenticator, warm_token_keys
from services.platform.runtime.calls import Call, WriteCall
from services.platform.runtime.protocol import BoundedHeadersProtocol
from services.platform.runtime.requests import AppState, bind_request
from services.platform.runtime.runner import run_service
from services.platform.runtime.service import ServiceContext, ServiceDefinition, use_context

REPO_ROOT = Path(__file__).resolve().parents[3]
OPENAPI_PATH = "/openapi.json"
SWAGGER_UI_PATH = "/ui"
# Sent on every response: browsers must not guess another type than the declared one.
SECURITY_HEADERS: Final = ((b"x-content-type-options", b"nosniff"),)
NO_STORE: Final = {"Cache-Control": "no-store"}
# Swagger UI keeps the token given in "Authorize" across reloads (in the browser's storage).
SWAGGER_UI_CONFIG: Final = {"persistAuthorization": True}
SWAGGER_UI_TITLE: Final = b"<title>Swagger UI</title>"

ContextFactory = Callable[[], AbstractAsyncContextManager[ServiceContext]]
"""What the app's lifespan runs: `lambda: run_service(definition, settings)` by default."""

Handler = Callable[..., Any]


class MissingHandlersError(RuntimeError):
    """Operations of the spec that have no handler."""

    def __init__(self, module: str, missing: list[str]) -> None:
        self.missing = tuple(missing)
        lines = "\n".join(f"  - {item}" for item in missing)
        super().__init__(f"{module} lacks a handler for {len(missing)} operation(s):\n{lines}")


def server_config(app: ServiceApp, host: str, port: int) -> uvicorn.Config:
    """How uvicorn runs every app (`erp serve`, `erp up`, tests): logging is the kit's (JSON
    lines, its own access log), and no `Server` header tells a scanner which stack answers.

    `X-Forwarded-For` sets the client address (rate limits, audit log) only when the peer is
    one of `ERP_TRUSTED_PROXIES`; uvicorn's own default would trust any local process. A
    header section over `ERP_MAX_HEADER_BYTES` is a 431 (`runtime/protocol.py`)."""
    trusted = app.settings.trusted_proxies
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=BoundedHeadersProtocol.limited_to(app.settings.max_header_bytes),
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=list(trusted),
    )


def spec_path(service: str) -> Path:
    return REPO_ROOT / "generated" / "specs" / f"{service}.openapi.json"


def create_app(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    lifespan: ContextFactory | None = None,
    spec: Path | None = None,
) -> ServiceApp:
    """The service's ASGI app. `lifespan`/`spec` replace the defaults (tests use them)."""
    return ServiceApp(
        definition,
        settings,
        lifespan or (lambda: run_service(definition, settings)),
        (spec or spec_path(definition.name)).read_bytes(),
    )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One operation, ready to serve: its handler and its compiled request/response checks."""

    operation: OperationInfo
    handler: Handler
    parser: RequestParser
    response_schema: CompiledSchema | None
    writes: bool  # the handler gets a WriteCall (the service has a database)
    kit: bool = False  # served by the kit (health, metrics): also before start-up, without a Call

    @property
    def cacheable(self) -> bool:
        """Only a public read may be kept by caches; anything else may carry tokens, secrets
        or a caller's data, so it is sent with `Cache-Control: no-store`."""
        return self.operation.public and not self.operation.writes


class ServiceApp:
    """The ASGI app of one service (see the module docstring)."""

    def __init__(
        self,
        definition: ServiceDefinition,
        settings: Settings,
        lifespan: ContextFactory,
        spec: bytes,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self._lifespan = lifespan
        self._spec = spec
        document = json.loads(spec)
        self.state = AppState(service=definition.name, version=str(document["info"]["version"]))
        self._authenticator = Authenticator(definition, settings)
        self._metrics = RequestMetrics(definition.name)
        self._cors = CorsPolicy(settings.cors_origins, definition.operations.values())
        endpoints = _endpoints(definition, settings, _kit_handlers(self.state))
        self.router: Router[Endpoint] = Router((e.operation, e) for e in endpoints)
        self._swagger = SwaggerUIMiddleware(self._not_found)
        self._swagger.add_api(
            Specification.load(document),
            swagger_ui_options=SwaggerUIOptions(
                serve_spec=False, spec_path=OPENAPI_PATH, swagger_ui_config=SWAGGER_UI_CONFIG
            ),
        )
        # The bundled page is titled "Swagger UI" whatever it shows; several tabs must say which.
        self._ui_title = f"<title>{html.escape(document['info']['title'])} — API docs</title>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)

    # --- one request ----------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        route: str | None = None
        stored = False  # whether a shared cache may keep the answer (public reads only)
        client = scope.get("client")
        preflight = is_preflight(method, headers)
        with bind_request(self.state, headers, client[0] if client else None) as ids:
            try:
                found = self.router.match(method, path)
                if found is None:
                    if path == OPENAPI_PATH and method == "GET":
                        rendered = Rendered(200, self._spec, {"content-type": "application/json"})
                    elif path == SWAGGER_UI_PATH or path.startswith(SWAGGER_UI_PATH + "/"):
                        ui_send = _with_security_headers(ids.wrap(send))
                        if path == SWAGGER_UI_PATH + "/":
                            ui_send = _retitled(ui_send, self._ui_title)
                        try:
                            await self._swagger(scope, receive, ui_send)
                        except StarletteHTTPException as refused:  # no such file, or a POST
                            raise _swagger_refusal(refused) from None
                        return
                    elif path == "/" and method in ("GET", "HEAD"):
                        # Whoever opens the service's address lands on its docs.
                        rendered = Rendered(307, b"", {"location": SWAGGER_UI_PATH + "/"})
                    else:
                        raise not_found()
                else:
                    route = found.route.template
                    endpoint = found.target
                    if endpoint is None and preflight:
                        granted = self._cors.preflight(headers["origin"], route, headers)
                        rendered = Rendered(204, b"", granted)
                    elif endpoint is None:
                        raise method_not_allowed(method, found.route.allow)
                    else:
                        stored = endpoint.cacheable
                        rendered = await self._serve(
                            endpoint, scope, receive, headers, found.path_parameters, ids.caller
                        )
            except Exception as error:
                rendered = render_problem(to_problem(error, method, path), path)
            extra = ids.response_headers if stored else {**ids.response_headers, **NO_STORE}
            # A preflight's answer has its own CORS headers (none when refused).
            cors = {} if preflight else self._cors.response_headers(headers.get("origin"))
            if cors:
                extra = {**extra, **cors}
            await _send(send, rendered, extra, head=method == "HEAD")
            seconds = time.perf_counter() - started
            self._metrics.record(method, route, rendered.status, seconds)
            log_request(method, path, route, rendered.status, seconds)  # with the request's ids

    async def _serve(
        self,
        endpoint: Endpoint,
        scope: Scope,
        receive: Receive,
        headers: Mapping[str, str],
        path_parameters: Mapping[str, str],
        caller: Callable[[], Caller],
    ) -> Rendered:
        operation = endpoint.operation
        ctx = self.state.context
        principal = await authenticate(operation, headers, self._authenticator)
        token = scope_vars.principal.set(principal)
        try:
            arguments, idempotency_key = endpoint.parser.parameters(
                scope.get("query_string", b""), path_parameters, headers
            )
            data: Any = None
            if endpoint.parser.has_body:
                body, data = endpoint.parser.body(
                    await _read_body(receive, headers, self.settings.max_body_bytes),
                    headers.get("content-type"),
                )
                arguments["body"] = body
            if ctx is None:
                if endpoint.kit:  # liveness, readiness, health, metrics: they report the state
                    return self._render(endpoint, await endpoint.handler(None, **arguments))
                raise Problem(503, detail="The service is starting or stopping; retry shortly.")
            who = caller()
            if not endpoint.writes:
                result = await endpoint.handler(Call(who, ctx), **arguments)
                return self._render(endpoint, result)

            async def effect(uow: UnitOfWork) -> Rendered:
                result = await endpoint.handler(WriteCall(who, ctx, uow), **arguments)
                return self._render(endpoint, result)

            if idempotency_key is None:
                # Committed before rendering: the row locks the write took are held only as
                # long as the handler runs (rendering a response outside the contract is our
                # bug, answered 500; the effect stands, as after a connection lost past commit).
                async with ctx.unit_of_work() as uow:
                    result = await endpoint.handler(WriteCall(who, ctx, uow), **arguments)
                    await uow.commit()
                return self._render(endpoint, result)
            # The response is stored with the effect, so it is rendered inside the transaction.
            return await idempotent(
                ctx,
                operation_id=operation.operation_id,
                key=idempotency_key,
                body=data,
                principal=who.subject,
                run=effect,
                request_secrets=operation.body.secrets if operation.body else (),
                response_secrets=operation.success.secrets if operation.success else (),
            )
        finally:
            scope_vars.principal.reset(token)

    def _render(self, endpoint: Endpoint, result: object) -> Rendered:
        check = endpoint.response_schema
        rendered, data = render(endpoint.operation, result, keep_data=check is not None)
        if check is not None and data is not None and rendered.status == _success(endpoint):
            errors = check.errors(data, "")
            if errors:
                operation = endpoint.operation
                raise contract_breach(operation.method, operation.path, errors)
        return rendered

    async def _not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, render_problem(not_found(), scope.get("path")), {})

    # --- lifespan -------------------------------------------------------------------------

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        async with AsyncExitStack() as stack:
            message = await receive()
            assert message["type"] == "lifespan.startup"
            try:
                ctx = await stack.enter_async_context(self._lifespan())
            except BaseException as error:
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                raise
            self.state.context = ctx
            # Readiness also waits for these keys; start-up does not (auth may be down).
            self.state.token_keys = keys = self._authenticator.token_keys(ctx)
            with use_context(ctx):
                warm_up = asyncio.create_task(
                    warm_token_keys(keys, ctx.name), name=f"{ctx.name}:warm-token-keys"
                )
            stack.push_async_callback(_cancel, warm_up)
            # What start-up built (the spec, validators, models, the ORM's registries) lives
            # as long as the process: out of the collector's sight, a full collection no
            # longer walks it in the middle of a request (the latency tail).
            gc.freeze()
            self.state.ready = True
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            self.state.ready = False  # readiness turns 503 while shutting down
            try:
                await stack.aclose()
            except BaseException as error:
                self.state.context = None
                await send({"type": "lifespan.shutdown.failed", "message": str(error)})
                raise
            self.state.context = None
            self.state.token_keys = None
            await send({"type": "lifespan.shutdown.complete"})


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _success(endpoint: Endpoint) -> int | None:
    success = endpoint.operation.success
    return None if success is None else success.status


def _endpoints(
    definition: ServiceDefinition, settings: Settings, kit: Mapping[str, Handler]
) -> list[Endpoint]:
    handlers = importlib.import_module(definition.handlers)
    missing = [
        f"{op.operation_id} ({op.method} {op.path})"
        for op in definition.operations.values()
        if op.operation_id not in kit and not callable(getattr(handlers, op.operation_id, None))
    ]
    if missing:
        raise MissingHandlersError(handlers.__name__, missing)
    schemas = definition.schemas.get("definitions", {})
    endpoints = []
    for operation in definition.operations.values():
        success = operation.success
        check = (
            CompiledSchema(success.schema, schemas)
            if settings.validate_responses and success is not None and success.schema
            else None
        )
        endpoints.append(
            Endpoint(
                operation=operation,
                handler=kit.get(operation.operation_id) or _handler(handlers, operation),
                parser=RequestParser(operation, schemas),
                response_schema=check,
                writes=operation.writes and definition.has_database,
                kit=operation.operation_id in kit,
            )
        )
    return endpoints


def _handler(handlers: ModuleType, operation: OperationInfo) -> Handler:
    handler: Handler = getattr(handlers, operation.operation_id)
    return handler


def _kit_handlers(state: AppState) -> dict[str, Handler]:
    served = {
        "get_health": health.HealthHandlers(state).get_health,
        "get_readiness": health.HealthHandlers(state).get_readiness,
        "get_liveness": health.get_liveness,
        "get_metrics": get_metrics,
    }
    assert set(served) == KIT_OPERATIONS
    return served


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, detail="The client went away before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> Problem:
    return Problem(413, detail=f"The body is larger than {limit} bytes.")


def _swagger_refusal(refused: StarletteHTTPException) -> Problem:
    if refused.status_code == 404:
        return not_found()
    detail = "Swagger UI's files are read with GET or HEAD."
    return Problem(refused.status_code, detail=detail, headers=refused.headers)


def _with_security_headers(send: Send) -> Send:
    """`send` adding `SECURITY_HEADERS`, for what the kit delegates (Swagger UI's files)."""

    async def send_secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return send_secured


def _retitled(send: Send, title: str) -> Send:
    """`send` for Swagger UI's page, with the page's title replaced by `title` (the whole page
    is one body; its Content-Length follows)."""
    started: Message | None = None

    async def retitle(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = message  # sent with the body, once its length is known
            return
        if message["type"] == "http.response.body" and started is not None:
            body = message.get("body", b"").replace(SWAGGER_UI_TITLE, title.encode(), 1)
            headers = [(k, v) for k, v in started.get("headers", []) if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**started, "headers": headers})
            started = None
            message = {**message, "body": body}
        await send(message)

    return retitle


async def _send(
    send: Send, rendered: Rendered, extra: Mapping[str, str], *, head: bool = False
) -> None:
    """Send the response; for HEAD its headers only (Content-Length still the body's)."""
    headers = rendered.raw_headers()
    headers += [(name.encode(), value.encode()) for name, value in extra.items()]
    headers.append((b"content-length", str(len(rendered.body)).encode()))
    headers.extend(SECURITY_HEADERS)
    start: Message = {"type": "http.response.start", "status": rendered.status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": b"" if head else rendered.body})

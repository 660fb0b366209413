"""The app factory: one connexion AsyncApp per service, from its bundled OpenAPI document.

    app = create_app(definition, settings)      # uvicorn.run(app, log_config=None, ...)

What every service gets from here:

* the spec `generated/specs/<service>.openapi.json` (bundled by codegen), served byte for byte
  at `/openapi.json`, with Swagger UI at `/ui/`;
* operationId → handler: the operational ids (get_health, get_liveness, get_readiness,
  get_metrics) → the kit, every other one → a function of `definition.handlers`; a missing
  handler fails here, naming all of them;
* request validation (strict: unknown query parameters are 400; formats checked; bad bytes or
  JSON are 400) and response validation; problem+json for every error;
* bearer JWT and X-API-Key security, then the operation's x-permissions;
* request/correlation ids, JSON access log, Prometheus metrics by route template;
* a lifespan running the service (`runtime.run_service`), whose context handlers reach with
  `current_context()`, and warming up in the background the keys that verify access tokens
  (readiness is 503 until they are loaded: `authentication.warm_token_keys`).

Middleware order (outermost first): request context → access log → server errors → metrics →
connexion's exceptions → Swagger UI → concrete-path 405s → connexion's routing → security →
permissions → request validation → response validation → lifespan → connexion context.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from connexion import AsyncApp, request
from connexion.exceptions import ProblemException
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from services.platform.core.settings import Settings
from services.platform.http import metrics
from services.platform.http.access_log import AccessLogMiddleware
from services.platform.http.errors import ProblemRenderer
from services.platform.http.metrics import RouteMetricsMiddleware
from services.platform.http.responses import fix_content_type_inference, jsonifier
from services.platform.http.routes import HTTP_METHODS, ConcretePathMiddleware, RouteTable
from services.platform.http.security import PermissionMiddleware, security_map
from services.platform.http.validation import register_formats, validator_map
from services.platform.runtime import health
from services.platform.runtime.authentication import Authenticator, warm_token_keys
from services.platform.runtime.requests import AppState, RequestContextMiddleware
from services.platform.runtime.runner import run_service
from services.platform.runtime.service import ServiceContext, ServiceDefinition, use_context

REPO_ROOT = Path(__file__).resolve().parents[3]
OPENAPI_PATH = "/openapi.json"

OPERATIONAL_HANDLERS: Mapping[str, Callable[..., Any]] = {
    "get_health": health.get_health,
    "get_liveness": health.get_liveness,
    "get_readiness": health.get_readiness,
    "get_metrics": metrics.get_metrics,
}

ContextFactory = Callable[[], AbstractAsyncContextManager[ServiceContext]]
"""What the app's lifespan runs: `lambda: run_service(definition, settings)` by default."""


class MissingHandlersError(RuntimeError):
    """Operations of the spec that have no handler (or no operationId)."""

    def __init__(self, module: str, spec: Path, missing: list[str]) -> None:
        self.missing = tuple(missing)
        lines = "\n".join(f"  - {item}" for item in missing)
        super().__init__(
            f"{module} lacks a handler for {len(missing)} operation(s) of {spec}:\n{lines}"
        )


def spec_path(service: str) -> Path:
    return REPO_ROOT / "generated" / "specs" / f"{service}.openapi.json"


def create_app(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    lifespan: ContextFactory | None = None,
    spec: Path | None = None,
) -> AsyncApp:
    """The service's ASGI app. `lifespan`/`spec` replace the defaults (tests use them)."""
    source = spec or spec_path(definition.name)
    raw = source.read_bytes()
    document = json.loads(raw)
    handlers = importlib.import_module(definition.handlers)
    resolver = Resolver(function_resolver=_handler_lookup(document, handlers, source))

    register_formats()
    fix_content_type_inference()
    routes = RouteTable(document)
    state = AppState(service=definition.name, version=str(document["info"]["version"]))
    renderer = ProblemRenderer(routes)
    authenticator = Authenticator(definition, settings)
    run: ContextFactory = lifespan or (lambda: run_service(definition, settings))

    app = AsyncApp(
        definition.handlers,
        lifespan=_lifespan(run, state, authenticator),
        middlewares=[
            partial(RequestContextMiddleware, state=state),
            partial(AccessLogMiddleware, routes=routes),
            partial(ServerErrorMiddleware, handler=renderer.handle),
            # Before connexion's exception middleware, so problems count with their status.
            partial(RouteMetricsMiddleware, routes=routes, service=definition.name),
            ExceptionMiddleware,
            SwaggerUIMiddleware,
            partial(ConcretePathMiddleware, routes=routes),
            RoutingMiddleware,
            SecurityMiddleware,
            partial(PermissionMiddleware, routes=routes, authenticator=authenticator),
            RequestValidationMiddleware,
            ResponseValidationMiddleware,
            LifespanMiddleware,
            ContextMiddleware,
        ],
        jsonifier=jsonifier(),
        pythonic_params=True,
        resolver=resolver,
        strict_validation=True,
        validate_responses=True,
        validator_map=validator_map(),
        security_map=security_map(authenticator),
        # Connexion would serve its dereferenced copy; the published document is the bundle.
        swagger_ui_options=SwaggerUIOptions(serve_spec=False, spec_path=OPENAPI_PATH),
    )
    app.add_api(routes.concrete_first(document))
    for exception in (Exception, HTTPException, ProblemException):
        app.add_error_handler(exception, renderer.handle)
    app.add_url_rule(OPENAPI_PATH, "openapi", _serve_spec(raw), methods=["GET"])
    return app


def _handler_lookup(
    document: Mapping[str, Any], handlers: ModuleType, source: Path
) -> Callable[[str], Callable[..., Any]]:
    missing: list[str] = []
    for template, item in (document.get("paths") or {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            operation_id = operation.get("operationId")
            where = f"{method.upper()} {template}"
            if not operation_id:
                missing.append(f"{where} has no operationId")
            elif operation_id not in OPERATIONAL_HANDLERS and not callable(
                getattr(handlers, operation_id, None)
            ):
                missing.append(f"{operation_id} ({where})")
    if missing:
        raise MissingHandlersError(handlers.__name__, source, missing)

    headers = _header_parameters(document)

    def lookup(operation_id: str) -> Callable[..., Any]:
        handler = OPERATIONAL_HANDLERS.get(operation_id) or getattr(handlers, operation_id)
        wanted = headers.get(operation_id)
        return _with_headers(handler, wanted) if wanted else handler

    return lookup


def _header_parameters(document: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """operationId → {python argument: header name} for the header parameters it declares."""
    components = (document.get("components") or {}).get("parameters") or {}

    def resolved(parameter: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = parameter.get("$ref")
        return components[ref.rsplit("/", 1)[-1]] if isinstance(ref, str) else parameter

    found: dict[str, dict[str, str]] = {}
    for item in (document.get("paths") or {}).values():
        shared = [resolved(p) for p in item.get("parameters", [])]
        for method, operation in item.items():
            if method not in HTTP_METHODS or "operationId" not in operation:
                continue
            parameters = [*shared, *(resolved(p) for p in operation.get("parameters", []))]
            names = {
                re.sub(r"[^0-9a-z]+", "_", p["name"].lower()): p["name"]
                for p in parameters
                if p.get("in") == "header"
            }
            if names:
                found[operation["operationId"]] = names
    return found


def _with_headers(handler: Callable[..., Any], headers: Mapping[str, str]) -> Callable[..., Any]:
    """Connexion 3 validates header parameters but never passes them: pass them by name."""

    @functools.wraps(handler)  # connexion inspects the unwrapped signature
    async def with_headers(*args: Any, **kwargs: Any) -> Any:
        for argument, header in headers.items():
            kwargs.setdefault(argument, request.headers.get(header))
        return await handler(*args, **kwargs)

    return with_headers


def _lifespan(
    run: ContextFactory, state: AppState, authenticator: Authenticator
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            async with run() as ctx:
                state.context = ctx
                # Readiness also waits for these keys; start-up does not (auth may be down).
                state.token_keys = keys = authenticator.token_keys(ctx)
                with use_context(ctx):
                    warm_up = asyncio.create_task(
                        warm_token_keys(keys, ctx.name), name=f"{ctx.name}:warm-token-keys"
                    )
                state.ready = True
                try:
                    yield
                finally:
                    state.ready = False  # readiness turns 503 while shutting down
                    warm_up.cancel()
                    await asyncio.gather(warm_up, return_exceptions=True)
        finally:
            state.context = None
            state.token_keys = None

    return lifespan


def _serve_spec(raw: bytes) -> Callable[[Request], Any]:
    async def openapi(_request: Request) -> Response:
        return Response(raw, media_type="application/json")

    return openapi

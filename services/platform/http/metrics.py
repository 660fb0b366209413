"""Prometheus HTTP metrics by route template, and the `/metrics` handler (`get_metrics`).

prometheus-fastapi-instrumentator looks for Starlette routes, which connexion hides (every
request would be `handler="none"`); `RouteMetricsMiddleware` matches the request against the
spec's path templates instead, so labels stay bounded ("/api/v1/users/{user_id}", never an id).
It records into collectors defined once here: several apps in one process (`erp up`, tests)
share them, told apart by the `service` label.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_fastapi_instrumentator.metrics import Info
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from services.platform.http.routes import RouteTable

REQUESTS = Counter(
    "http_requests_total",
    "Total number of requests by method, status and handler.",
    ["service", "method", "handler", "status"],
)
DURATION = Histogram(
    "http_request_duration_seconds",
    "Latency of requests by method and handler (route template).",
    ["service", "method", "handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class RouteMetricsMiddleware(PrometheusInstrumentatorMiddleware):
    """The instrumentator's middleware with the handler label taken from the spec's routes."""

    def __init__(self, app: ASGIApp, *, routes: RouteTable, service: str) -> None:
        def record(info: Info) -> None:
            REQUESTS.labels(service, info.method, info.modified_handler, info.modified_status).inc()
            DURATION.labels(service, info.method, info.modified_handler).observe(
                info.modified_duration
            )

        super().__init__(
            app,
            should_group_status_codes=False,  # statuses are the documented few: keep them exact
            should_group_untemplated=True,  # unknown paths count as handler="none"
            instrumentations=[record],
        )
        self.routes = routes

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        template = self.routes.template(request.method, request.url.path)
        return (template, True) if template is not None else (request.url.path, False)


def _registry() -> Any:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    # Several uvicorn workers: add up what every worker process wrote.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


async def get_metrics() -> Response:
    """GET /metrics in the Prometheus text format 0.0.4."""
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_PLAIN_0_0_4)

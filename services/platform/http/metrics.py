"""Prometheus HTTP metrics by route template, and the `/metrics` handler (`get_metrics`).

Requests are labelled by the operation's path template ("/api/v1/users/{user_id}", never an
id; "none" for a path no operation has), so label sets stay bounded. The collectors are defined
once here: several apps in one process (`erp up`, tests) share them, told apart by the
`service` label. Labelled children are looked up once per (route, status) and kept, so a
request costs two dictionary lookups and two increments.
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

from services.platform.http.responses import Reply

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
UNMATCHED = "none"


class RequestMetrics:
    """The HTTP metrics of one service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}

    def record(self, method: str, route: str | None, status: int, seconds: float) -> None:
        handler = route or UNMATCHED
        counter = self._counters.get((method, handler, status))
        if counter is None:
            counter = REQUESTS.labels(self.service, method, handler, str(status))
            self._counters[(method, handler, status)] = counter
        counter.inc()
        duration = self._durations.get((method, handler))
        if duration is None:
            duration = DURATION.labels(self.service, method, handler)
            self._durations[(method, handler)] = duration
        duration.observe(seconds)


def _registry() -> Any:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    # Several uvicorn workers: add up what every worker process wrote.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


async def get_metrics(_call: object) -> Reply:
    """GET /metrics in the Prometheus text format 0.0.4."""
    return Reply(generate_latest(_registry()), content_type=CONTENT_TYPE_PLAIN_0_0_4)

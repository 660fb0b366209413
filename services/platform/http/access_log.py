"""The per-request access log: method, route template, path, status, duration."""

from __future__ import annotations

import logging

# Operational endpoints are hit every few seconds by probes and Prometheus.
QUIET_OPERATIONS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})

access_log = logging.getLogger("erp.access")


def log_request(method: str, path: str, route: str | None, status: int, seconds: float) -> None:
    level = logging.DEBUG if route in QUIET_OPERATIONS else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    duration_ms = round(seconds * 1000, 2)
    access_log.log(
        level,
        "%s %s %s %.2fms",
        method,
        path,
        status,
        duration_ms,
        extra={
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
        },
    )

"""The per-request access log: method, route template, path, status, duration."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.platform.http.routes import RouteTable

# Operational endpoints are hit every few seconds by probes and Prometheus.
QUIET_OPERATIONS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})

access_log = logging.getLogger("erp.access")


class AccessLogMiddleware:
    """One line per request: method, route template, path, status, duration_ms."""

    def __init__(self, app: ASGIApp, *, routes: RouteTable) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app dies before answering

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            method, path = scope["method"], scope["path"]
            route = self.routes.template(method, path)
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            level = logging.DEBUG if route in QUIET_OPERATIONS else logging.INFO
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

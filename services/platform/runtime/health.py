"""Handlers of the operational endpoints every service serves (specs/openapi/common.yaml).

* `get_health` — each dependency the service uses (database, Redis, RabbitMQ), with latency
  and a short timeout each; 200 when all are up, 503 otherwise. In embedded mode a dependency
  served by an in-process stand-in (SQLite, the in-process broker, fakeredis) that answers is
  `embedded`, not `ok`, and so is the whole report: nobody mistakes a demo for production.
* `get_liveness` — 200 as long as the process serves HTTP (no dependency checked).
* `get_readiness` — 200 once start-up finished and while the dependencies are up; 503 before,
  during shutdown and when a dependency is down, so the orchestrator routes elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.platform.core.settings import Settings
from services.platform.http.responses import Reply
from services.platform.runtime.requests import AppState
from services.platform.runtime.service import ServiceContext

CHECK_TIMEOUT_SECONDS = 2.0
HEALTHY = ("ok", "embedded")  # every dependency answers (`embedded`: some in process)


async def check(
    probe: Callable[[], Awaitable[object]], *, embedded: bool = False
) -> dict[str, Any]:
    """One dependency check as the spec's HealthCheck: status, latency_ms, error; an
    `embedded` dependency that answers is reported as such."""
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return _down(f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except Exception as error:
        return _down(_describe(error))
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return {"status": "embedded" if embedded else "ok", "latency_ms": latency_ms, "error": None}


def _down(error: str) -> dict[str, Any]:
    return {"status": "down", "latency_ms": None, "error": error}


def _describe(error: Exception) -> str:
    # The endpoint is public: say what failed, not where (no host names, URLs or passwords).
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


def stand_ins(settings: Settings) -> set[str]:
    """The dependencies served in process (embedded mode's stand-ins; a configured URL wins)."""
    served = set()
    if settings.database_url.startswith("sqlite"):
        served.add("database")
    if settings.redis_url is None:
        served.add("redis")
    if settings.amqp_url is None:
        served.add("rabbitmq")
    return served


async def dependency_checks(ctx: ServiceContext) -> dict[str, dict[str, Any]]:
    probes: dict[str, Callable[[], Awaitable[object]]] = {}
    if ctx.has_database:
        probes["database"] = ctx.database.ping
    probes["redis"] = ctx.redis.ping
    probes["rabbitmq"] = ctx.bus.ping
    embedded = stand_ins(ctx.settings)
    results = await asyncio.gather(
        *(check(probe, embedded=name in embedded) for name, probe in probes.items())
    )
    return dict(zip(probes, results, strict=True))


def _body(app: AppState, checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    states = [result["status"] for result in checks.values()]
    up = sum(1 for state in states if state != "down")
    if not checks or up == 0:
        status = "down"
    elif up < len(checks):
        status = "degraded"
    else:
        status = "embedded" if "embedded" in states else "ok"
    return {"status": status, "service": app.service, "version": app.version, "checks": checks}


class HealthHandlers:
    """`get_health` and `get_readiness` of one app (they report its state)."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def get_health(self, _call: object) -> Reply:
        return await self._report(require_ready=False)

    async def get_readiness(self, _call: object) -> Reply:
        return await self._report(require_ready=True)

    async def _report(self, *, require_ready: bool) -> Reply:
        app = self.state
        ctx = app.context
        if ctx is None or (require_ready and not app.ready):
            return Reply(_body(app, {}), 503)
        body = _body(app, await dependency_checks(ctx))
        if require_ready and not app.verifies_tokens:
            # The schema has no entry for the keys (the log says why); all dependencies may be up.
            if body["status"] in HEALTHY:
                body["status"] = "degraded"
            return Reply(body, 503)
        return Reply(body, 200 if body["status"] in HEALTHY else 503)


async def get_liveness(_call: object) -> Reply:
    return Reply({"status": "ok"})

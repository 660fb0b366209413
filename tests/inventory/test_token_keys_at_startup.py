"""A service verifies tokens from its first ready answer: `erp serve auth` and `erp serve
inventory` as real processes, against the real PostgreSQL, Redis and RabbitMQ.

Inventory fetches auth's JWKS in the background at start-up and says `/health/ready` 200 only
once it has the keys; a burst of valid tokens sent at that moment is served, none refused as
"signed by an unknown key". Started while auth is down, it stays not ready until auth is up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import create_super_admin
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

BURST = 64


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Processes a test started, stopped at its end whatever happens (inventory first)."""
    started: list[ServiceProcess] = []
    yield started
    for process in reversed(started):
        process.stop()


def _ready_within(service: ServiceProcess, seconds: float) -> None:
    def ready() -> bool:
        return httpx.get(f"{service.url}/health/ready", timeout=5).status_code == 200

    # An orchestrator's readiness probe, only faster.
    what = f"{service.service} answering /health/ready with 200"
    asyncio.run(eventually(ready, within=seconds, every=0.02, what=what))


async def _burst(service: ServiceProcess, token: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=BURST)
    async with httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as client:
        headers = {"Authorization": f"Bearer {token}"}
        return await asyncio.gather(
            *(client.get("/api/v1/stock", headers=headers) for _ in range(BURST))
        )


def test_a_burst_of_valid_tokens_the_moment_inventory_is_ready_is_served(
    scoped_env: Callable[[str], Mapping[str, str]],
    logs: Path,
    processes: list[ServiceProcess],
) -> None:
    env = scoped_env("startup_burst")
    admin = create_super_admin(env)
    auth = ServiceProcess("auth", env, logs).start()
    processes.append(auth)
    token = admin.login(auth.url)

    inventory = ServiceProcess("inventory", {**env, "ERP_AUTH_URL": auth.url}, logs)
    processes.append(inventory.start(ready=False))
    _ready_within(inventory, 30)

    responses = asyncio.run(_burst(inventory, token))

    refused = [r.json().get("detail") for r in responses if r.status_code != 200]
    assert refused == [], f"{len(refused)} of {BURST} refused: {set(refused)}"


def test_inventory_started_while_auth_is_down_is_ready_once_auth_is_up(
    scoped_env: Callable[[str], Mapping[str, str]],
    logs: Path,
    processes: list[ServiceProcess],
) -> None:
    env = scoped_env("startup_late_auth")
    admin = create_super_admin(env)
    auth = ServiceProcess("auth", env, logs)  # its port is chosen; nothing listens there yet
    inventory = ServiceProcess("inventory", {**env, "ERP_AUTH_URL": auth.url}, logs)
    processes.append(inventory.start(ready=False))

    for _ in range(5):  # inventory runs, its dependencies are up, but it cannot verify tokens
        response = httpx.get(f"{inventory.url}/health/ready", timeout=5)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "degraded"
        assert {name: check["status"] for name, check in body["checks"].items()} == {
            "database": "ok",
            "redis": "ok",
            "rabbitmq": "ok",
        }
        time.sleep(0.2)
    assert httpx.get(f"{inventory.url}/health/live", timeout=5).status_code == 200
    assert "cannot verify access tokens yet" in inventory.log()

    processes.insert(0, auth.start())
    _ready_within(inventory, 20)  # the warm-up retries at least every 5 s
    assert all(r.status_code == 200 for r in asyncio.run(_burst(inventory, admin.login(auth.url))))

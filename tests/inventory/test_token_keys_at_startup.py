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

from tests.support.processes import ServiceProcess, erp

pytestmark = pytest.mark.integration

ADMIN_EMAIL = "startup-admin@example.com"
ADMIN_PASSWORD = "Sup3r-secret-pass"
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


def _env(scoped_env: Callable[[str], Mapping[str, str]], scope: str) -> Mapping[str, str]:
    env = scoped_env(scope)
    erp("users", "create-admin", ADMIN_EMAIL, "--password", ADMIN_PASSWORD, env=env)
    return env


def _login(auth: ServiceProcess) -> str:
    response = httpx.post(
        f"{auth.url}/api/v1/auth/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["tokens"]["access_token"]
    return token


def _ready_within(service: ServiceProcess, seconds: float) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = httpx.get(f"{service.url}/health/ready", timeout=5)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.02)  # an orchestrator's probe, only faster


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
    env = _env(scoped_env, "startup_burst")
    auth = ServiceProcess("auth", env, logs).start()
    processes.append(auth)
    token = _login(auth)

    inventory = ServiceProcess("inventory", {**env, "ERP_AUTH_URL": auth.url}, logs)
    processes.append(inventory.start(ready=False))
    ready = _ready_within(inventory, 30)
    assert ready.status_code == 200, ready.text

    responses = asyncio.run(_burst(inventory, token))

    refused = [r.json().get("detail") for r in responses if r.status_code != 200]
    assert refused == [], f"{len(refused)} of {BURST} refused: {set(refused)}"


def test_inventory_started_while_auth_is_down_is_ready_once_auth_is_up(
    scoped_env: Callable[[str], Mapping[str, str]],
    logs: Path,
    processes: list[ServiceProcess],
) -> None:
    env = _env(scoped_env, "startup_late_auth")
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
    ready = _ready_within(inventory, 20)  # the warm-up retries at least every 5 s
    assert ready.status_code == 200, ready.text
    assert all(r.status_code == 200 for r in asyncio.run(_burst(inventory, _login(auth))))

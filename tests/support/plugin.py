"""The fixtures every test folder shares (registered by tests/conftest.py).

On the real servers (tests marked `integration`; a test that uses these fixtures without the
mark fails at collection), isolated per run (see `servers.py`):

* `service_env`: the ERP_* variables pointing services at this run's databases, vhost and keys;
  `scoped_env("name")` the same with databases and Redis keys of their own; `service_settings`
  the Settings a service would load from `service_env`.
* `module_env`: the environment of the module's services — `service_env`, unless the module
  overrides it (a module that changes what others would see: roles, rate limits, counts).
* `super_admin`: a super-admin `Account` in the auth database of `module_env`;
  `admin_token`: a fresh access token of it (every test its own: a test may revoke it).
* `auth_server`: the auth app under uvicorn in a thread (as `erp serve` serves it) on
  `module_env`; `auth_service`, `inventory_service`, `sales_service`, `financial_service`,
  `logistics_service`, `notification_service`: `erp serve auth|inventory|sales|financial|
  logistics|notification` as processes
  (logs in `service_logs`).
  `auth_url` is where `admin_token` logs in: `auth_server`'s, unless the module overrides it
  (`auth_service.url`).

Without servers:

* `embedded`: start services in process in embedded mode (see `embedded.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from services.auth.service import definition as auth_definition
from services.platform.core.settings import Settings, load_settings, service_variable
from services.platform.runtime.app import create_app
from services.platform.runtime.service import ServiceDefinition
from tests.support.accounts import Account, create_super_admin
from tests.support.embedded import (
    EmbeddedService,
    MigratedDatabases,
    StartEmbedded,
    embedded_service,
    embedded_settings,
    fresh_embedded_servers,
)
from tests.support.processes import ServerThread, ServiceProcess, own_vhost
from tests.support.servers import (
    AMQP_SERVER,
    REDIS_URL,
    RUN_ID,
    SERVICE_PORTS,
    delete_keys,
    drop_databases,
    run_database_url,
)

SERVER_FIXTURES = ("amqp_vhost", "redis_prefix", "test_databases")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit and integration tests are told apart by the mark alone: one that reaches the
    servers without it would fail on a machine without them, so it fails here first."""
    for item in items:
        used = set(getattr(item, "fixturenames", ())) & set(SERVER_FIXTURES)
        if used and item.get_closest_marker("integration") is None:
            raise pytest.UsageError(
                f"{item.nodeid} uses the servers ({', '.join(sorted(used))}) but is not marked "
                "`integration`"
            )


# --- this run's part of the servers ---------------------------------------------------------


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[str]:
    with own_vhost(f"erptest-{RUN_ID}") as vhost:
        yield vhost


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"erptest:{RUN_ID}:"
    yield prefix
    delete_keys(prefix)


@pytest.fixture(scope="session")
def test_databases() -> Iterator[None]:
    """Drops every database this run created (services create theirs when they start)."""
    yield
    drop_databases(f"erptest_{RUN_ID}_")


@pytest.fixture(scope="session")
def service_env(amqp_vhost: str, redis_prefix: str, test_databases: None) -> Mapping[str, str]:
    """ERP_* variables pointing every service at this run's databases, vhost and key prefix."""
    env = {
        "ERP_EMBEDDED": "0",
        "ERP_AMQP_URL": f"{AMQP_SERVER}/{amqp_vhost}",
        "ERP_REDIS_URL": REDIS_URL,
        "ERP_REDIS_PREFIX": redis_prefix,
        "ERP_RETRY_DELAYS": "0.05,0.1,0.2",
        # The tests stand in for the platform's proxy: `Api(ip=...)` sets X-Forwarded-For.
        "ERP_TRUSTED_PROXIES": "127.0.0.1",
    }
    for service in SERVICE_PORTS:
        env[service_variable(service, "DATABASE_URL")] = run_database_url(service)
    return env


@pytest.fixture(scope="session")
def scoped_env(service_env: Mapping[str, str]) -> Callable[[str], Mapping[str, str]]:
    """`scoped_env("contract")`: like `service_env`, with databases and Redis keys of its own,
    for tests that change shared state (roles, rate limits) in ways other tests must not see."""

    def env(scope: str) -> Mapping[str, str]:
        scoped = {**service_env, "ERP_REDIS_PREFIX": f"{service_env['ERP_REDIS_PREFIX']}{scope}:"}
        for service in SERVICE_PORTS:
            scoped[service_variable(service, "DATABASE_URL")] = run_database_url(service, scope)
        return scoped

    return env


@pytest.fixture(scope="session")
def service_settings(service_env: Mapping[str, str]) -> Callable[[str], Settings]:
    """`service_settings("sales")`: the Settings of a service in this run (any service name)."""

    def settings(service: str) -> Settings:
        env = {**service_env, service_variable(service, "DATABASE_URL"): run_database_url(service)}
        return load_settings(service, SERVICE_PORTS.get(service, 8099), env)

    return settings


# --- the services a module runs, and who logs in to them ------------------------------------


@pytest.fixture(scope="module")
def module_env(service_env: Mapping[str, str]) -> Mapping[str, str]:
    return service_env


@pytest.fixture(scope="module")
def super_admin(module_env: Mapping[str, str]) -> Account:
    return create_super_admin(module_env)


@pytest.fixture(scope="module")
def auth_settings(module_env: Mapping[str, str]) -> Settings:
    return load_settings("auth", SERVICE_PORTS["auth"], module_env)


@pytest.fixture(scope="module")
def auth_server(auth_settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(auth_definition, auth_settings)).start() as server:
        yield server


@pytest.fixture(scope="module")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="module")
def auth_service(module_env: Mapping[str, str], service_logs: Path) -> Iterator[ServiceProcess]:
    with ServiceProcess("auth", module_env, service_logs).start() as service:
        yield service


@pytest.fixture(scope="module")
def inventory_service(
    module_env: Mapping[str, str], auth_service: ServiceProcess, service_logs: Path
) -> Iterator[ServiceProcess]:
    env = {**module_env, "ERP_AUTH_URL": auth_service.url}
    with ServiceProcess("inventory", env, service_logs).start() as service:
        yield service


@pytest.fixture(scope="module")
def sales_service(
    module_env: Mapping[str, str],
    auth_service: ServiceProcess,
    inventory_service: ServiceProcess,
    service_logs: Path,
) -> Iterator[ServiceProcess]:
    """Sales asks this inventory for the products its replica does not hold yet."""
    env = {
        **module_env,
        "ERP_AUTH_URL": auth_service.url,
        "ERP_INVENTORY_URL": inventory_service.url,
    }
    with ServiceProcess("sales", env, service_logs).start() as service:
        yield service


@pytest.fixture(scope="module")
def financial_service(
    module_env: Mapping[str, str], auth_service: ServiceProcess, service_logs: Path
) -> Iterator[ServiceProcess]:
    env = {**module_env, "ERP_AUTH_URL": auth_service.url}
    with ServiceProcess("financial", env, service_logs).start() as service:
        yield service


@pytest.fixture(scope="module")
def logistics_service(
    module_env: Mapping[str, str], auth_service: ServiceProcess, service_logs: Path
) -> Iterator[ServiceProcess]:
    env = {**module_env, "ERP_AUTH_URL": auth_service.url}
    with ServiceProcess("logistics", env, service_logs).start() as service:
        yield service


@pytest.fixture(scope="module")
def notification_service(
    module_env: Mapping[str, str], auth_service: ServiceProcess, service_logs: Path
) -> Iterator[ServiceProcess]:
    env = {**module_env, "ERP_AUTH_URL": auth_service.url}
    with ServiceProcess("notification", env, service_logs).start() as service:
        yield service


@pytest.fixture(scope="module")
def auth_url(auth_server: ServerThread) -> str:
    return auth_server.url


@pytest.fixture
def admin_token(super_admin: Account, auth_url: str) -> str:
    return super_admin.login(auth_url)


# --- in process, embedded -------------------------------------------------------------------


@pytest.fixture(scope="session")
def migrated_databases(tmp_path_factory: pytest.TempPathFactory) -> MigratedDatabases:
    return MigratedDatabases(tmp_path_factory.mktemp("migrated"))


@pytest.fixture
async def embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_databases: MigratedDatabases
) -> AsyncIterator[StartEmbedded]:
    """`await embedded(definition, http=False, **settings)`: the service running in embedded
    mode until the test ends, with a broker, a Redis and a data directory of the test's own."""
    fresh_embedded_servers(monkeypatch)
    async with AsyncExitStack() as stack:

        async def start(
            definition: ServiceDefinition, *, http: bool = False, **settings: Any
        ) -> EmbeddedService:
            chosen = embedded_settings(definition.name, tmp_path, **settings)
            await migrated_databases.copy(definition, chosen)
            return await stack.enter_async_context(embedded_service(definition, chosen, http=http))

        yield start

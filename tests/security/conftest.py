"""What the probes of this suite share, started once per test session: every service of the
platform as `erp serve` processes (the others verify tokens from auth's JWKS) on the real
PostgreSQL, Redis and RabbitMQ, with databases, Redis keys, a RabbitMQ vhost and a body limit
of the suite's own; a super-admin; and users made on demand.

Names here never shadow the plugin's (`auth_server`, `admin_token`, ...): probe files added by
other changes use those, module by module, and see none of this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import aio_pika
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from services.platform.core.settings import Settings, load_settings
from tests.support.accounts import Account, Member, Members, create_super_admin
from tests.support.http import Api, new_ip
from tests.support.processes import ServiceProcess, own_vhost
from tests.support.servers import AMQP_SERVER, SERVICE_PORTS

# Small enough that a probe crosses it quickly, far above any valid request of the specs.
MAX_BODY_BYTES = 64 * 1024


@pytest.fixture(scope="session")
def security_vhost(amqp_vhost: str) -> Iterator[str]:
    """A vhost of the suite's own: its services live for the whole session, and their
    consumers must not compete for the queues of services other modules start."""
    with own_vhost(f"{amqp_vhost}-security") as vhost:
        yield vhost


@pytest.fixture(scope="session")
def security_env(
    scoped_env: Callable[[str], Mapping[str, str]], security_vhost: str
) -> Mapping[str, str]:
    return {
        **scoped_env("security"),
        "ERP_AMQP_URL": f"{AMQP_SERVER}/{security_vhost}",
        "ERP_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        # A consumer failure is retried quickly: dead letters arrive within a second.
        "ERP_RETRY_DELAYS": "0.05,0.1,0.2",
    }


@pytest.fixture(scope="session")
def security_auth_settings(security_env: Mapping[str, str]) -> Settings:
    return load_settings("auth", SERVICE_PORTS["auth"], security_env)


@pytest.fixture(scope="session")
def security_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("security-service-logs")


@pytest.fixture(scope="session")
def auth_app(security_env: Mapping[str, str], security_logs: Path) -> Iterator[ServiceProcess]:
    # A process of its own: modules of other suites run auth in this process meanwhile.
    with ServiceProcess("auth", security_env, security_logs).start() as service:
        yield service


@pytest.fixture(scope="session")
def security_inventory_settings(security_env: Mapping[str, str]) -> Settings:
    return load_settings("inventory", SERVICE_PORTS["inventory"], security_env)


@pytest.fixture(scope="session")
def inventory_app(
    security_env: Mapping[str, str], auth_app: ServiceProcess, security_logs: Path
) -> Iterator[ServiceProcess]:
    env = {**security_env, "ERP_AUTH_URL": auth_app.url}
    with ServiceProcess("inventory", env, security_logs).start() as service:
        yield service


@pytest.fixture(scope="session")
def sales_app(
    security_env: Mapping[str, str],
    auth_app: ServiceProcess,
    inventory_app: ServiceProcess,
    security_logs: Path,
) -> Iterator[ServiceProcess]:
    env = {**security_env, "ERP_AUTH_URL": auth_app.url, "ERP_INVENTORY_URL": inventory_app.url}
    with ServiceProcess("sales", env, security_logs).start() as service:
        yield service


@pytest.fixture(scope="session")
def financial_app(
    security_env: Mapping[str, str], auth_app: ServiceProcess, security_logs: Path
) -> Iterator[ServiceProcess]:
    env = {**security_env, "ERP_AUTH_URL": auth_app.url}
    with ServiceProcess("financial", env, security_logs).start() as service:
        yield service


@pytest.fixture(scope="session")
def logistics_app(
    security_env: Mapping[str, str], auth_app: ServiceProcess, security_logs: Path
) -> Iterator[ServiceProcess]:
    env = {**security_env, "ERP_AUTH_URL": auth_app.url}
    with ServiceProcess("logistics", env, security_logs).start() as service:
        yield service


@pytest.fixture(scope="session")
def notification_app(
    security_env: Mapping[str, str], auth_app: ServiceProcess, security_logs: Path
) -> Iterator[ServiceProcess]:
    env = {
        **security_env,
        "ERP_AUTH_URL": auth_app.url,
        # Ad hoc webhooks are enabled, so the SSRF probes reach the address checks.
        "ERP_NOTIFICATION_WEBHOOK_SECRET": "security-suite-webhook-secret",
    }
    with ServiceProcess("notification", env, security_logs).start() as service:
        yield service


@pytest.fixture(scope="session")
def auth_db(security_auth_settings: Settings, auth_app: ServiceProcess) -> Iterator[Engine]:
    """Auth's database (migrated by the running app), to read what the API must not show."""
    engine = create_engine(security_auth_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def inventory_db(
    security_inventory_settings: Settings, inventory_app: ServiceProcess
) -> Iterator[Engine]:
    engine = create_engine(security_inventory_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def root(security_env: Mapping[str, str]) -> Account:
    """The suite's super-admin (every permission)."""
    return create_super_admin(security_env)


@pytest.fixture(scope="session")
def root_token(root: Account, auth_app: ServiceProcess) -> str:
    """A token of `root` for the whole session: no probe logs it out or changes its roles."""
    return root.login(auth_app.url)


@pytest.fixture(scope="session")
def members(auth_app: ServiceProcess, root_token: str) -> Members:
    return Members(auth_app.url, root_token)


@pytest.fixture
def auth_api(auth_app: ServiceProcess) -> Iterator[Api]:
    """Auth as an anonymous caller from a client address of its own (pass `token=`)."""
    with Api(auth_app.url, ip=new_ip()) as api:
        yield api


@pytest.fixture
def inventory_api(inventory_app: ServiceProcess) -> Iterator[Api]:
    with Api(inventory_app.url, ip=new_ip()) as api:
        yield api


@pytest.fixture(scope="session")
async def amqp_channel(
    security_env: Mapping[str, str], inventory_app: ServiceProcess
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel on the suite's vhost, once inventory has declared the topology."""
    connection = await aio_pika.connect_robust(security_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def served(
    auth_app: ServiceProcess,
    inventory_app: ServiceProcess,
    sales_app: ServiceProcess,
    financial_app: ServiceProcess,
    logistics_app: ServiceProcess,
    notification_app: ServiceProcess,
) -> Mapping[str, ServiceProcess]:
    """Every service the suite runs, by name: a new service of `services.registry` starts
    here too, or the probes that cover every operation fail naming it."""
    return {
        "auth": auth_app,
        "inventory": inventory_app,
        "sales": sales_app,
        "financial": financial_app,
        "logistics": logistics_app,
        "notification": notification_app,
    }


# Users many probes act as. Shared by the whole session, so a probe never logs them out,
# deletes, deactivates or re-roles them (it makes its own with `members.new` for that).


@pytest.fixture(scope="session")
def plain_member(members: Members) -> Member:
    """A user without roles: authenticated, no permission at all."""
    return members.new(tag="plain")


@pytest.fixture(scope="session")
def stock_member(members: Members) -> Member:
    """A stock-manager: every inventory permission, none of auth's."""
    return members.new(["stock-manager"], tag="stock")


@pytest.fixture(scope="session")
def admin_member(members: Members) -> Member:
    """An admin: every permission but auth.roles.manage."""
    return members.new(["admin"], tag="admin")

"""Shared fixtures. Tests marked `integration` use the real servers, isolated per test run:

* PostgreSQL: one database per service, `erptest_<run>_<service>_db`, dropped at the end;
* RabbitMQ: a vhost `erptest-<run>` (rabbitmqctl; `ERP_TEST_RABBITMQCTL` may name another
  command, e.g. "docker exec rabbitmq rabbitmqctl"), deleted at the end;
* Redis: keys under `erptest:<run>:`, deleted at the end.

Server locations come from ERP_TEST_POSTGRES_URL, ERP_TEST_AMQP_SERVER and ERP_TEST_REDIS_URL
(defaults: the local servers). `service_env` is the environment a test hands to `erp` processes;
`service_settings("sales")` gives the Settings a service would load from it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping

import psycopg
import pytest
import redis
from psycopg import sql

from services.platform.core.settings import Settings, load_settings, service_variable
from tests.support.processes import rabbitmqctl

SERVICE_PORTS = {
    "auth": 8001,
    "inventory": 8002,
    "sales": 8003,
    "logistics": 8004,
    "financial": 8005,
    "notification": 8006,
}
POSTGRES_URL = os.environ.get("ERP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
AMQP_SERVER = os.environ.get("ERP_TEST_AMQP_SERVER", "amqp://guest:guest@127.0.0.1:5672")
REDIS_URL = os.environ.get("ERP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

RUN_ID = uuid.uuid4().hex[:10]


def run_database_url(service: str, scope: str = "") -> str:
    """The isolated database of `service` for this test run (and `scope` within it)."""
    server = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{server}/erptest_{RUN_ID}_{scope + '_' if scope else ''}{service}_db"


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[str]:
    vhost = f"erptest-{RUN_ID}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"erptest:{RUN_ID}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def test_databases() -> Iterator[None]:
    """Drops every database this run created (services create theirs when they start)."""
    yield
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as connection:
        names = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"erptest\\_{RUN_ID}\\_%",),
        ).fetchall()
        for (name,) in names:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def service_env(amqp_vhost: str, redis_prefix: str, test_databases: None) -> Mapping[str, str]:
    """ERP_* variables pointing every service at this run's databases, vhost and key prefix."""
    env = {
        "ERP_EMBEDDED": "0",
        "ERP_AMQP_URL": f"{AMQP_SERVER}/{amqp_vhost}",
        "ERP_REDIS_URL": REDIS_URL,
        "ERP_REDIS_PREFIX": redis_prefix,
        "ERP_RETRY_DELAYS": "0.05,0.1,0.2",
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

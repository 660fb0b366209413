"""The real servers the `integration` tests use, and this run's own part of them:

* PostgreSQL: one database per service, `erptest_<run>_<service>_db`, dropped at the end;
* RabbitMQ: a vhost `erptest-<run>` (rabbitmqctl; `ERP_TEST_RABBITMQCTL` may name another
  command, e.g. "docker exec rabbitmq rabbitmqctl"), deleted at the end;
* Redis: keys under `erptest:<run>:`, deleted at the end.

Server locations come from ERP_TEST_POSTGRES_URL, ERP_TEST_AMQP_SERVER and ERP_TEST_REDIS_URL
(defaults: the local servers). The fixtures are in `plugin.py`.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import redis
from psycopg import sql

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


def drop_databases(prefix: str) -> None:
    """Drop every database whose name starts with `prefix` (sessions connected to it too)."""
    escaped = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as connection:
        names = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{escaped}%",)
        ).fetchall()
        for (name,) in names:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def delete_keys(prefix: str) -> None:
    """Delete every Redis key under `prefix`."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()

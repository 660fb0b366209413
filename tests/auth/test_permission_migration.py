"""Migration 0004 on PostgreSQL: an installation whose roles and partner keys hold
`financial.invoices.generate` holds `financial.invoices.manage` instead, and back on downgrade."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from alembic import command
from psycopg import sql
from sqlalchemy import create_engine, make_url, text

from services.auth.service import definition
from services.platform.persistence.db import alembic_config
from tests.support.servers import POSTGRES_URL, run_database_url

pytestmark = pytest.mark.integration

MIGRATIONS = Path(definition.migrations or "")
OLD, NEW = "financial.invoices.generate", "financial.invoices.manage"


@pytest.fixture
def database_at_0003(test_databases: None) -> str:
    url = run_database_url("auth", f"perm{uuid.uuid4().hex[:8]}")
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as connection:
        name = make_url(url).database or ""
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    command.upgrade(alembic_config(MIGRATIONS, url), "0003")
    return url


def held(url: str) -> tuple[set[str], list[str], list[str]]:
    """(the catalogue's invoice slugs, the role's invoice slugs, the key's permissions)."""
    database = create_engine(url)
    try:
        with database.connect() as connection:
            catalogue = set(
                connection.execute(
                    text("SELECT slug FROM permissions WHERE slug LIKE 'financial.invoices.%'")
                ).scalars()
            )
            role = sorted(
                connection.execute(
                    text(
                        "SELECT permission_slug FROM role_permissions"
                        " WHERE permission_slug LIKE 'financial.invoices.%'"
                    )
                ).scalars()
            )
            key = connection.execute(text("SELECT permissions FROM api_keys")).scalar_one()
            return catalogue, role, list(key)
    finally:
        database.dispose()


def test_roles_and_keys_keep_their_invoice_permission_under_its_new_name(
    database_at_0003: str,
) -> None:
    now = datetime.now(UTC)
    database = create_engine(database_at_0003)
    try:
        with database.begin() as connection:
            for slug, action in ((OLD, "generate"), ("financial.invoices.view", "view")):
                connection.execute(
                    text(
                        "INSERT INTO permissions VALUES"
                        " (:slug, 'financial', 'invoices', :action, 'd')"
                    ),
                    {"slug": slug, "action": action},
                )
            role = uuid.uuid4()
            connection.execute(
                text(
                    "INSERT INTO roles (id, slug, name, is_system, created_at, updated_at,"
                    " version) VALUES (:id, 'financial', 'Financial', true, :now, :now, 1)"
                ),
                {"id": role, "now": now},
            )
            for slug in (OLD, "financial.invoices.view"):
                connection.execute(
                    text("INSERT INTO role_permissions VALUES (:role, :slug)"),
                    {"role": role, "slug": slug},
                )
            connection.execute(
                text(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, permissions, created_at)"
                    " VALUES (:id, 'Partner', 'p1', 'h', CAST(:granted AS json), :now)"
                ),
                {"id": uuid.uuid4(), "granted": json.dumps([OLD, "sales.orders.view"]), "now": now},
            )
    finally:
        database.dispose()

    command.upgrade(alembic_config(MIGRATIONS, database_at_0003), "0004")
    assert held(database_at_0003) == (
        {NEW, "financial.invoices.view"},
        [NEW, "financial.invoices.view"],
        [NEW, "sales.orders.view"],
    )
    command.downgrade(alembic_config(MIGRATIONS, database_at_0003), "0003")
    assert held(database_at_0003) == (
        {OLD, "financial.invoices.view"},
        [OLD, "financial.invoices.view"],
        [OLD, "sales.orders.view"],
    )


def test_a_fresh_database_has_nothing_to_rename(database_at_0003: str) -> None:
    command.upgrade(alembic_config(MIGRATIONS, database_at_0003), "0004")
    database = create_engine(database_at_0003)
    try:
        with database.connect() as connection:
            count = connection.execute(text("SELECT count(*) FROM permissions")).scalar_one()
    finally:
        database.dispose()
    assert count == 0  # the catalogue is seeded at start-up, with the new slug

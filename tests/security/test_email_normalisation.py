"""Regression probes of e-mail identity (issue 7, item 10; ADR 0010): one mailbox is one
account whatever its spelling — NFC or NFD, a domain in Unicode or in punycode, any letter
case — on every path that takes an address; and the migration makes existing rows canonical,
refusing (and changing nothing) when two accounts would become one."""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from psycopg import sql
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine

from services.auth.admin import create_admin
from services.auth.service import definition
from services.platform.core.settings import Settings
from services.platform.persistence.db import alembic_config
from tests.support.accounts import PASSWORD
from tests.support.http import Api, new_ip
from tests.support.polling import eventually
from tests.support.problems import problem
from tests.support.processes import ServerThread
from tests.support.servers import POSTGRES_URL, run_database_url

pytestmark = pytest.mark.integration

MIGRATIONS = Path(definition.migrations or "")
REGISTER = "/api/v1/auth/register"
TAKEN = "The e-mail address is already registered."


def nfc(address: str) -> str:
    return unicodedata.normalize("NFC", address)


def nfd(address: str) -> str:
    return unicodedata.normalize("NFD", address)


def fresh() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def api(auth_server: ServerThread) -> Iterator[Api]:
    with Api(auth_server.url, ip=new_ip()) as client:
        yield client


@pytest.fixture(scope="module")
def engine(auth_settings: Settings, auth_server: ServerThread) -> Iterator[Engine]:
    database = create_engine(auth_settings.database_url)
    yield database
    database.dispose()


def stored_emails(engine: Engine, marker: str) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT email FROM users WHERE email LIKE :like ORDER BY email"),
            {"like": f"%{marker}%"},
        ).all()
    return [row.email for row in rows]


def events(engine: Engine, event_name: str, marker: str) -> list[dict[str, Any]]:
    """The payloads of the outbox's `event_name` events that mention `marker`."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT body FROM outbox WHERE event_name = :name AND body LIKE :like"),
            {"name": event_name, "like": f"%{marker}%"},
        ).all()
    return [json.loads(row.body)["payload"] for row in rows]


def register(api: Api, email: str) -> Any:
    """POST /register from a fresh client address (registration is rate limited per address)."""
    body = {"name": "José", "email": email, "password": PASSWORD}
    return api.from_another_address().post(REGISTER, json=body)


# --- over HTTP -------------------------------------------------------------------------------


def test_nfc_and_nfd_spellings_are_one_account(api: Api, engine: Engine) -> None:
    marker = fresh()
    canonical = nfc(f"josé-{marker}@example.com")
    assert register(api, canonical).status_code == 201
    refused = register(api, nfd(f"JOSÉ-{marker}@Example.com"))
    assert problem(refused, 409)["detail"] == TAKEN
    assert stored_emails(engine, marker) == [canonical]
    session = api.login(nfd(f"José-{marker}@example.com"), PASSWORD)
    assert session["user"]["email"] == canonical


def test_a_punycode_and_a_unicode_domain_are_one_account(api: Api, engine: Engine) -> None:
    marker = fresh()
    created = register(api, f"maria-{marker}@xn--bcher-kva.de")
    assert created.status_code == 201, created.text
    assert created.json()["user"]["email"] == f"maria-{marker}@bücher.de"
    assert problem(register(api, f"MARIA-{marker}@BÜCHER.de"), 409)["detail"] == TAKEN
    assert stored_emails(engine, marker) == [f"maria-{marker}@bücher.de"]
    api.login(f"maria-{marker}@XN--BCHER-KVA.DE", PASSWORD)
    assert [payload["email"] for payload in events(engine, "auth.user.registered", marker)] == [
        f"maria-{marker}@bücher.de"
    ]


def test_user_create_and_update_compare_canonical_forms(
    api: Api, admin_token: str, engine: Engine
) -> None:
    marker = fresh()
    first = nfc(f"zoë-{marker}@bücher.de")
    body = {"name": "Zoë", "email": first, "password": PASSWORD}
    assert api.post("/api/v1/users", token=admin_token, json=body).status_code == 201
    twin = {**body, "email": nfd(f"ZOË-{marker}@xn--bcher-kva.de")}
    assert problem(api.post("/api/v1/users", token=admin_token, json=twin), 409)["detail"] == TAKEN

    other = {"name": "Other", "email": f"other-{marker}@example.com", "password": PASSWORD}
    created = api.post("/api/v1/users", token=admin_token, json=other)
    assert created.status_code == 201, created.text
    user = f"/api/v1/users/{created.json()['id']}"
    clash = api.patch(user, token=admin_token, json={"email": twin["email"]})
    assert problem(clash, 409)["detail"] == TAKEN
    moved = api.patch(user, token=admin_token, json={"email": nfd(f"Renée-{marker}@Example.com")})
    assert moved.status_code == 200, moved.text
    assert moved.json()["email"] == nfc(f"renée-{marker}@example.com")
    assert stored_emails(engine, marker) == sorted([first, nfc(f"renée-{marker}@example.com")])


async def test_forgot_password_finds_the_account_by_any_spelling(api: Api, engine: Engine) -> None:
    marker = fresh()
    canonical = nfc(f"andré-{marker}@bücher.de")
    assert register(api, canonical).status_code == 201
    answered = api.post(
        "/api/v1/auth/forgot-password", json={"email": nfd(f"ANDRÉ-{marker}@xn--bcher-kva.de")}
    )
    assert answered.status_code == 202, answered.text
    # A job writes the reset e-mail's event after the answer.
    sent = await eventually(lambda: events(engine, "auth.user.password_reset_requested", marker))
    assert [payload["email"] for payload in sent] == [canonical]


async def test_the_admin_cli_stores_the_canonical_form(
    api: Api, auth_settings: Settings, engine: Engine
) -> None:
    marker = fresh()
    typed = nfd(f"  Chloé-{marker}@XN--BCHER-KVA.de ")
    await create_admin(auth_settings, typed, "Sup3r-secret-pass", "Chloé")
    canonical = nfc(f"chloé-{marker}@bücher.de")
    assert stored_emails(engine, marker) == [canonical]
    assert problem(register(api, canonical), 409)["detail"] == TAKEN
    # Running it again with another spelling promotes the same account.
    await create_admin(auth_settings, canonical.upper(), "Sup3r-secret-pass", "Chloé")
    assert stored_emails(engine, marker) == [canonical]


# --- the migration, on PostgreSQL --------------------------------------------------------------


@pytest.fixture
def database_at_0001(test_databases: None) -> str:
    """A new auth database migrated to revision 0001 (dropped with the run's databases)."""
    url = run_database_url("auth", f"emails{fresh()}")
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as connection:
        name = make_url(url).database or ""
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    command.upgrade(alembic_config(MIGRATIONS, url), "0001")
    return url


def insert_users(url: str, emails: list[str]) -> dict[str, str]:
    """Rows as revision 0001 kept them, written straight to the table: {id: email}."""
    now = datetime.now(UTC)
    rows = {str(uuid.uuid4()): email for email in emails}
    database = create_engine(url)
    try:
        with database.begin() as connection:
            for user_id, email in rows.items():
                connection.execute(
                    text(
                        "INSERT INTO users (id, name, email, password_hash, is_active,"
                        " created_at, updated_at, version)"
                        " VALUES (:id, 'n', :email, 'h', true, :now, :now, 1)"
                    ),
                    {"id": user_id, "email": email, "now": now},
                )
    finally:
        database.dispose()
    return rows


def users_and_revision(url: str) -> tuple[dict[str, str], str]:
    database = create_engine(url)
    try:
        with database.connect() as connection:
            users = {str(r.id): r.email for r in connection.execute(text("SELECT * FROM users"))}
            revision = connection.execute(text("SELECT version_num FROM alembic_version"))
            return users, revision.scalar_one()
    finally:
        database.dispose()


def test_the_migration_rewrites_existing_rows_to_the_canonical_form(
    database_at_0001: str,
) -> None:
    before = insert_users(
        database_at_0001,
        [nfd("josé@example.com"), "maria@xn--bcher-kva.de", "plain@example.com"],
    )
    command.upgrade(alembic_config(MIGRATIONS, database_at_0001), "0003")
    users, revision = users_and_revision(database_at_0001)
    assert revision == "0003"
    assert users == {
        user_id: {
            nfd("josé@example.com"): nfc("josé@example.com"),
            "maria@xn--bcher-kva.de": "maria@bücher.de",
        }.get(email, email)
        for user_id, email in before.items()
    }


def test_the_migration_refuses_to_merge_accounts_and_changes_nothing(
    database_at_0001: str,
) -> None:
    before = insert_users(
        database_at_0001,
        [
            nfc("josé@example.com"),
            nfd("josé@example.com"),
            "ana@bücher.de",
            "ana@xn--bcher-kva.de",
            "maria@xn--bcher-kva.de",  # alone: would be rewritten, but nothing may change
        ],
    )
    with pytest.raises(RuntimeError) as refused:
        command.upgrade(alembic_config(MIGRATIONS, database_at_0001), "0003")
    report = str(refused.value)
    assert "2 e-mail address(es) are held by more than one account" in report
    assert "Nothing was changed" in report
    for user_id, email in before.items():
        if not email.startswith("maria"):
            assert f"user {user_id}: stored as {email!a}" in report
    assert users_and_revision(database_at_0001) == (before, "0001")

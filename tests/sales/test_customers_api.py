"""The sales customers API over HTTP, against the real PostgreSQL, Redis and RabbitMQ.

Sales runs under uvicorn in a thread, as `erp serve` runs it, verifying the tokens of a real
auth (`ERP_AUTH_URL`). Databases and Redis keys are this module's own (`scoped_env`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from services.platform.core.settings import Settings, load_settings
from services.platform.runtime.app import create_app
from services.sales.service import definition
from services.sales.tables import metadata
from tests.support.accounts import PASSWORD
from tests.support.customers import HOME
from tests.support.events import assert_conforms
from tests.support.http import Api, unique_cpf, unique_email
from tests.support.problems import problem
from tests.support.processes import ServerThread
from tests.support.schema import assert_migrations_match

pytestmark = pytest.mark.integration

MIGRATIONS = Path(definition.migrations or "")
OFFICE = {**HOME, "street": "Rua Funchal", "number": "418", "zip_code": "04551-060"}


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]], auth_server: ServerThread) -> Settings:
    return load_settings("sales", 8003, {**scoped_env("salesapi"), "ERP_AUTH_URL": auth_server.url})


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(definition, settings)).start() as running:
        yield running


@pytest.fixture(scope="module")
def engine(settings: Settings, server: ServerThread) -> Iterator[Engine]:
    database = create_engine(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def public(server: ServerThread) -> Iterator[Api]:
    with Api(server.url) as client:
        yield client


@pytest.fixture
def api(public: Api, admin_token: str) -> Api:
    return public.as_caller(admin_token)


def customer_events(engine: Engine, customer_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) of the customer's events in the outbox, oldest first, each checked
    against the AsyncAPI document."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT event_name, body FROM outbox ORDER BY id")).all()
    found = []
    for name, body in rows:
        envelope = json.loads(body)
        if envelope["payload"].get("customer_id") == customer_id:
            assert_conforms(body.encode())
            found.append((name, envelope["payload"]))
    return found


def new_customer(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"name": "Maria Souza", "email": unique_email("maria"), "document": unique_cpf()}
    return api.created("/api/v1/customers", {**body, **fields})


def test_migrations_match_the_tables_on_postgresql_and_sqlite(
    engine: Engine, tmp_path: Path
) -> None:
    assert_migrations_match(MIGRATIONS, metadata, engine, tmp_path)


def test_customers_need_credentials_and_permissions(public: Api, auth_server: ServerThread) -> None:
    problem(public("GET", "/api/v1/customers"), 401)
    with Api(auth_server.url) as auth:
        body = {"name": "Plain", "email": unique_email("plain"), "password": PASSWORD}
        token = auth.created("/api/v1/auth/register", body)["tokens"]["access_token"]
    plain = public.as_caller(token)
    problem(plain("GET", "/api/v1/customers"), 403)
    problem(plain("POST", "/api/v1/customers", json={"name": "x"}), 403)


def test_a_customer_is_stored_normalised_and_announced(api: Api, engine: Engine) -> None:
    email = unique_email("Maria").upper()
    digits = unique_cpf()
    document = f"{digits[:3]}.{digits[3:6]}.{digits[6:9]}-{digits[9:]}"
    created = api.created(
        "/api/v1/customers",
        {"name": "Maria Souza", "email": email, "document": document, "addresses": [HOME]},
    )
    assert created["email"] == email.lower()
    assert (created["document"], created["document_type"]) == (digits, "cpf")
    assert created["status"] == "active"
    assert created["version"] == 1
    [address] = created["addresses"]
    assert address["is_default"] is True
    assert address["country"] == "BR"
    assert api("GET", f"/api/v1/customers/{created['id']}").json() == created

    [(name, payload)] = customer_events(engine, created["id"])
    assert name == "sales.customer.created"
    assert payload["email"] == created["email"]
    assert payload["addresses"][0]["address_id"] == address["id"]

    # The same e-mail in another spelling, the same document with other punctuation: taken.
    again = {"name": "x", "email": email.lower(), "document": "11222333000181"}
    assert "e-mail" in problem(api("POST", "/api/v1/customers", json=again), 409)["detail"]
    same_document = {
        "name": "x",
        "email": unique_email("x"),
        "document": f"{digits[:9]}-{digits[9:]}",
    }
    assert (
        "document" in problem(api("POST", "/api/v1/customers", json=same_document), 409)["detail"]
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("52998224724", "is not a valid CPF (check digits)"),
        ("111.111.111-11", "must not repeat a single digit"),
        ("11222333000182", "is not a valid CNPJ (check digits)"),
        ("123456789012", "must have 11 (CPF) or 14 (CNPJ) digits"),
    ],
)
def test_a_bad_document_is_a_422_naming_the_rule(api: Api, document: str, message: str) -> None:
    body = {"name": "x", "email": unique_email("x"), "document": document}
    refused = problem(api("POST", "/api/v1/customers", json=body), 422)
    assert refused["errors"] == [{"field": "document", "message": message}]
    assert document not in json.dumps(refused)


def test_bad_input_is_a_400_never_a_500(api: Api) -> None:
    cases: list[dict[str, Any]] = [
        {"name": "x", "email": "not-an-address", "document": unique_cpf()},
        {"name": "x", "email": unique_email("x"), "document": "3905334470A"},
        {
            "name": "x",
            "email": unique_email("x"),
            "document": unique_cpf(),
            "addresses": [{**HOME, "zip_code": "01310100"}],
        },
        {
            "name": "x",
            "email": unique_email("x"),
            "document": unique_cpf(),
            "addresses": [{**HOME, "state": "sp"}],
        },
    ]
    for body in cases:
        problem(api("POST", "/api/v1/customers", json=body), 400)


def test_two_default_addresses_are_refused(api: Api) -> None:
    body = {
        "name": "x",
        "email": unique_email("x"),
        "document": unique_cpf(),
        "addresses": [{**HOME, "is_default": True}, {**OFFICE, "is_default": True}],
    }
    refused = problem(api("POST", "/api/v1/customers", json=body), 422)
    assert refused["errors"][0]["field"] == "addresses"


def test_addresses_keep_exactly_one_default(api: Api, engine: Engine) -> None:
    customer = new_customer(api)
    base = f"/api/v1/customers/{customer['id']}/addresses"
    home = api.created(base, HOME)
    assert home["is_default"] is True  # the first address
    office = api.created(base, OFFICE)
    assert office["is_default"] is False

    refused = problem(api("PATCH", f"{base}/{home['id']}", json={"is_default": False}), 422)
    assert refused["errors"][0]["field"] == "is_default"
    moved = api("PATCH", f"{base}/{office['id']}", json={"is_default": True})
    assert moved.status_code == 200, moved.text
    current = api("GET", f"/api/v1/customers/{customer['id']}").json()
    assert [a["is_default"] for a in current["addresses"]] == [False, True]

    assert api("DELETE", f"{base}/{office['id']}").status_code == 204
    current = api("GET", f"/api/v1/customers/{customer['id']}").json()
    assert [(a["id"], a["is_default"]) for a in current["addresses"]] == [(home["id"], True)]
    problem(api("DELETE", f"{base}/{office['id']}"), 404)
    problem(api("DELETE", f"/api/v1/customers/{uuid.uuid4()}/addresses/{home['id']}"), 404)

    names = [name for name, _ in customer_events(engine, customer["id"])]
    assert names == ["sales.customer.created"] + ["sales.customer.updated"] * 4
    versions = [p["version"] for _, p in customer_events(engine, customer["id"])]
    assert versions == [1, 2, 3, 4, 5]


def test_update_deactivates_and_checks_versions(api: Api, engine: Engine) -> None:
    customer = new_customer(api)
    path = f"/api/v1/customers/{customer['id']}"
    problem(api("PATCH", path, json={"status": "inactive"}, headers={"If-Match": '"9"'}), 412)
    updated = api("PATCH", path, json={"status": "inactive"}, headers={"If-Match": '"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "inactive"
    assert updated.headers["ETag"] == '"2"'
    unchanged = api("PATCH", path, json={"status": "inactive"})
    assert unchanged.json()["version"] == 2  # nothing changed: no new version, no event
    assert len(customer_events(engine, customer["id"])) == 2

    other = new_customer(api)
    taken = api("PATCH", path, json={"email": other["email"].upper()})
    assert "e-mail" in problem(taken, 409)["detail"]
    problem(api("PATCH", f"/api/v1/customers/{uuid.uuid4()}", json={"name": "x"}), 404)


def test_the_list_filters_and_pages(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    first = new_customer(api, name=f"Ana {tag}")
    new_customer(api, name=f"Bruno {tag}")
    found = api("GET", "/api/v1/customers", params={"search": tag, "per_page": 1}).json()
    assert found["meta"]["total"] == 2
    assert [c["id"] for c in found["data"]] == [first["id"]]
    by_document = api("GET", "/api/v1/customers", params={"search": first["document"][:9]})
    assert first["id"] in [c["id"] for c in by_document.json()["data"]]
    percent = api("GET", "/api/v1/customers", params={"search": "%"}).json()
    assert percent["meta"]["total"] == 0

"""Suppliers and accounts payable and receivable over HTTP, against the real PostgreSQL, Redis
and a real auth (ADR 0013): financial runs under uvicorn in a thread, as `erp serve` runs it;
the overdue job runs on the same database. Databases and Redis keys are this module's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from stdnum.br import cnpj

from services.financial.commands import accounts
from services.financial.service import definition
from services.platform.core.contracts import Topology
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import InProcessBus, InProcessRouter
from services.platform.persistence.db import Database
from services.platform.persistence.redis import Keys, connect_redis
from services.platform.runtime.app import create_app
from services.platform.runtime.service import ServiceContext
from tests.support.http import Api, unique_cnpj
from tests.support.problems import problem
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]], auth_server: ServerThread) -> Settings:
    env = {**scoped_env("financial_accounts"), "ERP_AUTH_URL": auth_server.url}
    return load_settings("financial", 8005, env)


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(definition, settings)).start() as running:
        yield running


@pytest.fixture
async def ctx(settings: Settings, server: ServerThread) -> AsyncIterator[ServiceContext]:
    """The service's context on the database the server migrated: the job runs in it."""
    running = ServiceContext(
        definition=definition,
        settings=settings,
        database=Database(settings),
        redis=connect_redis(settings),
        keys=Keys(settings.redis_prefix),
        bus=InProcessBus(InProcessRouter(Topology((), ())), service=definition.name),
        http=httpx.AsyncClient(),
    )
    yield running
    await running.http.aclose()
    await running.redis.aclose()
    await running.database.dispose()


@pytest.fixture
def api(server: ServerThread, admin_token: str) -> Iterator[Api]:
    with Api(server.url, admin_token) as client:
        yield client


def new_supplier(api: Api, **fields: Any) -> dict[str, Any]:
    return api.created("/api/v1/suppliers", {"name": "Fornecedor", "cnpj": unique_cnpj(), **fields})


def new_payable(api: Api, supplier_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "supplier_id": supplier_id,
        "description": "Paper",
        "amount": "100.00",
        "issue_date": TODAY.isoformat(),
        "payment_terms_days": 30,
    }
    return api.created("/api/v1/payables", {**body, **fields})


def new_receivable(api: Api, **fields: Any) -> dict[str, Any]:
    body = {
        "customer_id": "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e",
        "customer_name": "João Silva",
        "description": "Consulting",
        "amount": "300.00",
        "issue_date": TODAY.isoformat(),
        "payment_terms_days": 10,
    }
    return api.created("/api/v1/receivables", {**body, **fields})


# ------------------------------------------------------------------ suppliers


def test_a_supplier_is_stored_with_its_cnpjs_digits_and_its_canonical_email(api: Api) -> None:
    digits = unique_cnpj()
    formatted = cnpj.format(digits)
    supplier = new_supplier(
        api, cnpj=formatted, email="Contas@Example.COM", phone="+55 11 3333-4444"
    )
    assert (supplier["cnpj"], supplier["email"]) == (digits, "contas@example.com")
    assert (supplier["status"], supplier["version"]) == ("active", 1)
    fetched = api.get(f"/api/v1/suppliers/{supplier['id']}")
    assert fetched.json() == supplier
    assert fetched.headers["etag"] == '"1"'
    found = api.get("/api/v1/suppliers", params={"search": digits[:10]}).json()["data"]
    assert [row["id"] for row in found] == [supplier["id"]]


def test_a_cnpj_is_unique_however_it_is_written(api: Api) -> None:
    supplier = new_supplier(api)
    again = api.post(
        "/api/v1/suppliers", json={"name": "Twin", "cnpj": cnpj.format(supplier["cnpj"])}
    )
    assert problem(again, 409)["detail"] == "A supplier with this CNPJ already exists."
    other = new_supplier(api)
    moved = api.patch(f"/api/v1/suppliers/{other['id']}", json={"cnpj": supplier["cnpj"]})
    problem(moved, 409)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("11222333000182", "is not a valid CNPJ (check digits)"),
        ("11.111.111/1111-11", "must not repeat a single digit"),
        ("529.982.247-25", "must have 14 (CNPJ) digits"),  # a valid CPF: suppliers are companies
    ],
)
def test_a_bad_cnpj_is_a_422_naming_the_rule(api: Api, raw: str, message: str) -> None:
    refused = problem(api.post("/api/v1/suppliers", json={"name": "X", "cnpj": raw}), 422)
    assert refused["errors"] == [{"field": "cnpj", "message": message}]


def test_an_update_under_a_stale_etag_is_a_412_and_changes_nothing(api: Api) -> None:
    supplier = new_supplier(api)
    path = f"/api/v1/suppliers/{supplier['id']}"
    renamed = api.patch(path, json={"name": "Renamed"}, headers={"If-Match": '"1"'})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.headers["etag"]) == ("Renamed", '"2"')
    stale = api.patch(path, json={"name": "Lost update"}, headers={"If-Match": '"1"'})
    problem(stale, 412)
    assert api.get(path).json()["name"] == "Renamed"


def test_a_deactivated_supplier_takes_no_new_payables(api: Api) -> None:
    supplier = new_supplier(api)
    path = f"/api/v1/suppliers/{supplier['id']}/deactivate"
    first, second = api.post(path), api.post(path)
    assert (first.json()["status"], first.json()["version"]) == ("inactive", 2)
    assert second.json() == first.json()  # idempotent
    refused = api.post(
        "/api/v1/payables",
        json={
            "supplier_id": supplier["id"],
            "description": "Paper",
            "amount": "10.00",
            "issue_date": TODAY.isoformat(),
            "payment_terms_days": 0,
        },
    )
    assert problem(refused, 422)["errors"] == [
        {"field": "supplier_id", "message": "is not an active supplier"}
    ]


# ------------------------------------------------------------------ payables


def test_a_payable_is_due_after_its_terms_and_paid_once(api: Api) -> None:
    supplier = new_supplier(api)
    payable = new_payable(api, supplier["id"], payment_terms_days=45)
    assert payable["due_date"] == (TODAY + timedelta(days=45)).isoformat()
    assert (payable["status"], payable["category"], payable["currency"]) == (
        "pending",
        "expense",
        "BRL",
    )
    path = f"/api/v1/payables/{payable['id']}"
    paid_at = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    paid = api.post(f"{path}/pay", json={"paid_at": paid_at})
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["version"]) == ("paid", 2)
    assert datetime.fromisoformat(paid.json()["paid_at"]) == datetime.fromisoformat(paid_at)
    again = problem(api.post(f"{path}/pay", json={}), 409)
    assert again["detail"] == "Account payable is paid: it cannot become paid."
    cancelled = problem(api.post(f"{path}/cancel", json={"reason": "Late"}), 409)
    assert cancelled["detail"] == "Account payable is paid: it cannot become cancelled."
    assert api.get(path).json() == paid.json()


def test_a_payable_is_cancelled_with_its_reason(api: Api) -> None:
    payable = new_payable(api, new_supplier(api)["id"])
    path = f"/api/v1/payables/{payable['id']}"
    cancelled = api.post(f"{path}/cancel", json={"reason": "Duplicate invoice"})
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["cancellation_reason"]) == ("cancelled", "Duplicate invoice")
    assert body["cancelled_at"] is not None
    problem(api.post(f"{path}/pay", json={}), 409)


def test_a_payable_already_past_due_starts_overdue_and_can_still_be_paid(api: Api) -> None:
    payable = new_payable(
        api, new_supplier(api)["id"], issue_date=(TODAY - timedelta(days=40)).isoformat()
    )
    assert payable["status"] == "overdue"
    paid = api.post(f"/api/v1/payables/{payable['id']}/pay", json={})
    assert paid.json()["status"] == "paid"


def test_payment_in_the_future_or_zero_amounts_are_422(api: Api) -> None:
    supplier = new_supplier(api)
    payable = new_payable(api, supplier["id"])
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    refused = problem(
        api.post(f"/api/v1/payables/{payable['id']}/pay", json={"paid_at": future}), 422
    )
    assert refused["errors"] == [{"field": "paid_at", "message": "must not be in the future"}]
    assert api.get(f"/api/v1/payables/{payable['id']}").json()["status"] == "pending"
    zero = api.post(
        "/api/v1/payables",
        json={
            "supplier_id": supplier["id"],
            "description": "Nothing",
            "amount": "0.00",
            "issue_date": TODAY.isoformat(),
            "payment_terms_days": 0,
        },
    )
    assert problem(zero, 422)["errors"] == [{"field": "amount", "message": "must be at least 0.01"}]


def test_terms_beyond_365_days_are_a_400(api: Api) -> None:
    supplier = new_supplier(api)
    body = {
        "supplier_id": supplier["id"],
        "description": "Paper",
        "amount": "1.00",
        "issue_date": TODAY.isoformat(),
        "payment_terms_days": 366,
    }
    refused = problem(api.post("/api/v1/payables", json=body), 400)
    assert [error["field"] for error in refused["errors"]] == ["payment_terms_days"]


def test_payables_are_listed_by_status_supplier_and_due_date(api: Api) -> None:
    supplier = new_supplier(api)
    soon = new_payable(api, supplier["id"], payment_terms_days=5)
    later = new_payable(api, supplier["id"], payment_terms_days=60)
    api.post(f"/api/v1/payables/{later['id']}/pay", json={})

    def listed(**params: Any) -> list[str]:
        response = api.get("/api/v1/payables", params={"supplier_id": supplier["id"], **params})
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["data"]]

    assert listed() == [soon["id"], later["id"]]  # earliest due first
    assert listed(status="pending") == [soon["id"]]
    assert listed(due_from=(TODAY + timedelta(days=6)).isoformat()) == [later["id"]]
    assert listed(due_to=(TODAY + timedelta(days=5)).isoformat()) == [soon["id"]]
    assert listed(category="income") == []
    assert listed(per_page=1, page=2) == [later["id"]]


def test_an_unknown_payable_is_a_404(api: Api) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    problem(api.get(f"/api/v1/payables/{unknown}"), 404)
    problem(api.post(f"/api/v1/payables/{unknown}/pay", json={}), 404)


# ------------------------------------------------------------------ receivables


def test_a_manual_receivable_is_received_once(api: Api) -> None:
    receivable = new_receivable(api)
    assert (receivable["status"], receivable["category"], receivable["order_id"]) == (
        "pending",
        "income",
        None,
    )
    assert receivable["due_date"] == (TODAY + timedelta(days=10)).isoformat()
    path = f"/api/v1/receivables/{receivable['id']}"
    received = api.post(f"{path}/receive", json={})
    assert received.status_code == 200, received.text
    assert received.json()["status"] == "received"
    assert received.json()["received_at"] is not None
    refused = problem(api.post(f"{path}/cancel", json={"reason": "Too late"}), 409)
    assert refused["detail"] == "Account receivable is received: it cannot become cancelled."
    listed = api.get("/api/v1/receivables", params={"customer_id": receivable["customer_id"]})
    assert receivable["id"] in [row["id"] for row in listed.json()["data"]]


def test_a_manual_receivable_is_cancelled_with_its_reason(api: Api) -> None:
    receivable = new_receivable(api, category="expense", currency="USD")
    cancelled = api.post(
        f"/api/v1/receivables/{receivable['id']}/cancel", json={"reason": "Not delivered"}
    )
    body = cancelled.json()
    assert (body["status"], body["cancellation_reason"]) == ("cancelled", "Not delivered")
    assert (body["category"], body["currency"]) == ("expense", "USD")


# ------------------------------------------------------------------ the overdue job


async def test_the_job_makes_pending_accounts_past_due_overdue_once(
    api: Api, ctx: ServiceContext
) -> None:
    supplier = new_supplier(api)
    due_today = new_payable(api, supplier["id"], payment_terms_days=0)
    due_later = new_payable(api, supplier["id"], payment_terms_days=3)
    paid = new_payable(api, supplier["id"], payment_terms_days=0)
    api.post(f"/api/v1/payables/{paid['id']}/pay", json={})
    receivable = new_receivable(api, payment_terms_days=0)

    await accounts.mark_overdue(ctx, today=TODAY)  # due today is still in time
    assert api.get(f"/api/v1/payables/{due_today['id']}").json()["status"] == "pending"

    tomorrow = TODAY + timedelta(days=1)
    marked = await accounts.mark_overdue(ctx, today=tomorrow)
    assert marked.payables >= 1
    assert marked.receivables >= 1
    overdue = api.get(f"/api/v1/payables/{due_today['id']}")
    assert (overdue.json()["status"], overdue.headers["etag"]) == ("overdue", '"2"')
    assert api.get(f"/api/v1/payables/{due_later['id']}").json()["status"] == "pending"
    assert api.get(f"/api/v1/payables/{paid['id']}").json()["status"] == "paid"
    assert api.get(f"/api/v1/receivables/{receivable['id']}").json()["status"] == "overdue"

    again = await accounts.mark_overdue(ctx, today=tomorrow)
    assert again == accounts.Overdue(payables=0, receivables=0)
    assert api.get(f"/api/v1/payables/{due_today['id']}").json()["version"] == 2
    paid_late = api.post(f"/api/v1/payables/{due_today['id']}/pay", json={})
    assert paid_late.json()["status"] == "paid"


async def test_the_job_marks_a_bounded_batch_per_run(api: Api, ctx: ServiceContext) -> None:
    supplier = new_supplier(api)
    rows = [new_payable(api, supplier["id"], payment_terms_days=0) for _ in range(3)]
    day = TODAY + timedelta(days=1)
    runs = [await accounts.mark_overdue(ctx, today=day, batch=2) for _ in range(3)]
    assert [run.payables for run in runs][:2] == [2, 1]  # this module's other rows are settled
    assert runs[2].payables == 0
    statuses = {api.get(f"/api/v1/payables/{row['id']}").json()["status"] for row in rows}
    assert statuses == {"overdue"}

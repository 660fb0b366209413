"""Carriers and freight quotes over HTTP, against the real PostgreSQL, Redis and a real auth:
logistics runs under uvicorn in a thread, as `erp serve` runs it. Databases and Redis keys are
this module's own."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.logistics import domain
from services.logistics.service import definition
from services.platform.core.settings import Settings, load_settings
from services.platform.runtime.app import create_app
from tests.support.http import Api
from tests.support.problems import problem
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

PARCEL: dict[str, Any] = {
    "weight_kg": 2.5,
    "dimensions": {"length_cm": 30, "width_cm": 20, "height_cm": 10},
    "origin_cep": "01310-100",
}


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]], auth_server: ServerThread) -> Settings:
    env = {**scoped_env("logistics_carriers"), "ERP_AUTH_URL": auth_server.url}
    return load_settings("logistics", 8004, env)


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(definition, settings)).start() as running:
        yield running


@pytest.fixture
def api(server: ServerThread, admin_token: str) -> Iterator[Api]:
    with Api(server.url, admin_token) as client:
        yield client


def unique_code() -> str:
    return "T" + uuid.uuid4().hex[:12].upper()


def new_carrier(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"code": unique_code(), "name": "Transportadora", "service_types": ["standard"]}
    return api.created("/api/v1/carriers", {**body, **fields})


def quotes(api: Api, destination: str) -> list[dict[str, Any]]:
    response = api.post("/api/v1/carriers/quote", json={**PARCEL, "destination_cep": destination})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def test_a_carrier_is_created_read_listed_updated_and_deactivated(api: Api) -> None:
    carrier = new_carrier(api, service_types=["express", "standard", "express"])
    assert carrier["service_types"] == ["express", "standard"]  # a repeat is kept once
    assert (carrier["active"], carrier["version"]) == (True, 1)
    path = f"/api/v1/carriers/{carrier['id']}"
    fetched = api.get(path)
    assert fetched.json() == carrier
    assert fetched.headers["etag"] == '"1"'
    listed = api.get("/api/v1/carriers", params={"active": "true", "per_page": 100}).json()
    assert carrier["id"] in [row["id"] for row in listed["data"]]
    codes = [row["code"] for row in listed["data"]]
    assert codes == sorted(codes)

    renamed = api.patch(path, json={"name": "Renamed"}, headers={"If-Match": '"1"'})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["version"]) == ("Renamed", 2)
    assert renamed.headers["etag"] == '"2"'
    stale = api.patch(path, json={"name": "Lost update"}, headers={"If-Match": '"1"'})
    problem(stale, 412)
    assert api.get(path).json()["name"] == "Renamed"
    unchanged = api.patch(path, json={"name": "Renamed"})
    assert unchanged.json()["version"] == 2  # nothing changed, no new version

    deactivated = api.post(f"{path}/deactivate")
    assert deactivated.status_code == 200, deactivated.text
    assert (deactivated.json()["active"], deactivated.json()["version"]) == (False, 3)
    again = api.post(f"{path}/deactivate")
    assert again.json()["version"] == 3  # idempotent
    inactive = api.get("/api/v1/carriers", params={"active": "false", "per_page": 100}).json()
    assert carrier["id"] in [row["id"] for row in inactive["data"]]
    active = api.get("/api/v1/carriers", params={"active": "true", "per_page": 100}).json()
    assert carrier["id"] not in [row["id"] for row in active["data"]]

    reactivated = api.patch(path, json={"active": True})
    assert (reactivated.json()["active"], reactivated.json()["version"]) == (True, 4)


def test_a_taken_code_is_409_and_bad_input_is_400(api: Api) -> None:
    carrier = new_carrier(api)
    body = {"code": carrier["code"], "name": "Other", "service_types": ["economy"]}
    assert "already exists" in problem(api.post("/api/v1/carriers", json=body), 409)["detail"]
    for bad in (
        {**body, "code": "lower"},
        {**body, "code": "A"},
        {**body, "service_types": []},
        {**body, "service_types": ["overnight"]},
    ):
        problem(api.post("/api/v1/carriers", json=bad), 400)
    problem(api.get(f"/api/v1/carriers/{uuid.uuid4()}"), 404)
    problem(api.post(f"/api/v1/carriers/{uuid.uuid4()}/deactivate"), 404)


def test_a_quote_has_one_price_per_active_carrier_and_service_type(api: Api) -> None:
    carrier = new_carrier(api, service_types=["standard", "express"])
    retired = new_carrier(api, service_types=["economy"])
    api.post(f"/api/v1/carriers/{retired['id']}/deactivate")
    found = quotes(api, "20040-020")
    mine = {q["service_type"]: q for q in found if q["carrier_id"] == carrier["id"]}
    assert set(mine) == {"standard", "express"}
    assert not [q for q in found if q["carrier_id"] == retired["id"]]
    standard = mine["standard"]
    assert (standard["price"], standard["currency"], standard["business_days"]) == (
        "31.25",
        "BRL",
        6,
    )
    assert standard["estimated"] is False
    assert standard["carrier_code"] == carrier["code"]
    today = datetime.now(UTC).date()
    assert standard["estimated_delivery_date"] == domain.add_business_days(today, 6).isoformat()
    prices = [Decimal(q["price"]) for q in found]
    assert prices == sorted(prices)


def test_a_carrier_that_cannot_answer_gets_the_default_estimate(api: Api) -> None:
    carrier = new_carrier(api, service_types=["express"])
    found = [q for q in quotes(api, "99999-999") if q["carrier_id"] == carrier["id"]]
    farthest = domain.rate(domain.ServiceType.EXPRESS, Decimal("2.5"), domain.FARTHEST)
    assert [(q["price"], q["business_days"], q["estimated"]) for q in found] == [
        (str(farthest.price), farthest.business_days, True)
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"weight_kg": 0},
        {"weight_kg": 1000.5},
        {"dimensions": {"length_cm": 301, "width_cm": 20, "height_cm": 10}},
        {"dimensions": {"length_cm": 30, "width_cm": 0, "height_cm": 10}},
        {"dimensions": {"length_cm": 30, "width_cm": 20}},
        {"origin_cep": "01310100"},
        {"destination_cep": "2004-0020"},
    ],
)
def test_a_bad_parcel_is_400(api: Api, change: dict[str, Any]) -> None:
    body = {**PARCEL, "destination_cep": "20040-020", **change}
    problem(api.post("/api/v1/carriers/quote", json=body), 400)

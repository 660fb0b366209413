"""The inventory API over HTTP, against the real PostgreSQL, Redis and RabbitMQ.

Both apps run under uvicorn in threads, as `erp serve` runs them: auth issues the tokens and
serves the JWKS, inventory verifies them from `ERP_AUTH_URL` (the kit's default key source).
Databases and Redis keys are this module's own (`scoped_env`).
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

from services.inventory.service import definition
from services.inventory.tables import metadata
from services.platform.core.settings import Settings, load_settings
from services.platform.runtime.app import create_app
from tests.support.accounts import PASSWORD
from tests.support.events import assert_conforms
from tests.support.http import Api, unique_email
from tests.support.problems import problem
from tests.support.processes import ServerThread
from tests.support.schema import assert_migrations_match

pytestmark = pytest.mark.integration

MIGRATIONS = Path(definition.migrations or "")


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return scoped_env("inventoryapi")


@pytest.fixture(scope="module")
def settings(module_env: Mapping[str, str], auth_server: ServerThread) -> Settings:
    return load_settings("inventory", 8002, {**module_env, "ERP_AUTH_URL": auth_server.url})


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(definition, settings)).start() as running:
        yield running


@pytest.fixture(scope="module")
def engine(settings: Settings, server: ServerThread) -> Iterator[Engine]:
    database = create_engine(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def plain_token(auth_server: ServerThread) -> str:
    """A registered user without roles (no inventory permission)."""
    body = {"name": "Plain", "email": unique_email("plain"), "password": PASSWORD}
    with Api(auth_server.url) as auth:
        token: str = auth.created("/api/v1/auth/register", body)["tokens"]["access_token"]
        return token


@pytest.fixture
def public(server: ServerThread) -> Iterator[Api]:
    with Api(server.url) as client:
        yield client


@pytest.fixture
def api(public: Api, admin_token: str) -> Api:
    return public.as_caller(admin_token)


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10].upper()}"


def outbox(engine: Engine, event_name: str, product_id: str) -> list[dict[str, Any]]:
    """Payloads of `event_name` about `product_id`, oldest first, checked against AsyncAPI."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT body FROM outbox WHERE event_name = :name ORDER BY id"),
            {"name": event_name},
        ).all()
    found = []
    for (body,) in rows:
        envelope = json.loads(body)
        if envelope["payload"].get("product_id") == product_id:
            assert_conforms(body.encode())
            found.append(envelope["payload"])
    return found


def new_product(api: Api, **fields: Any) -> dict[str, Any]:
    return api.created(
        "/api/v1/products", {"sku": sku(), "name": "Widget", "price": "10.00", **fields}
    )


# --- schema ---------------------------------------------------------------------------------


def test_migrations_match_the_tables_on_postgresql_and_sqlite(
    engine: Engine, tmp_path: Path
) -> None:
    assert_migrations_match(MIGRATIONS, metadata, engine, tmp_path)


# --- security -------------------------------------------------------------------------------


def test_catalogue_reads_are_public_and_writes_need_permissions(
    public: Api, plain_token: str
) -> None:
    assert public("GET", "/api/v1/products").status_code == 200
    assert public("GET", "/api/v1/categories").status_code == 200
    problem(
        public("POST", "/api/v1/products", json={"sku": sku(), "name": "x", "price": "1.00"}), 401
    )
    problem(public("GET", "/api/v1/stock"), 401)
    plain = public.as_caller(plain_token)
    problem(
        plain("POST", "/api/v1/products", json={"sku": sku(), "name": "x", "price": "1.00"}), 403
    )
    problem(plain("GET", "/api/v1/warehouses"), 403)


def test_the_default_warehouse_is_seeded(api: Api) -> None:
    listed = api("GET", "/api/v1/warehouses", params={"per_page": 100}).json()["data"]
    defaults = [w for w in listed if w["is_default"]]
    assert [w["code"] for w in defaults] == ["DEFAULT"]


# --- categories -----------------------------------------------------------------------------


def test_category_hierarchy_rules(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    root = api.created("/api/v1/categories", {"name": f"Eletrônicos {tag}"})
    assert root["slug"] == f"eletronicos-{tag}"
    child = api.created("/api/v1/categories", {"name": f"Child {tag}", "parent_id": root["id"]})
    grandchild = api.created(
        "/api/v1/categories", {"name": f"Grandchild {tag}", "parent_id": child["id"]}
    )
    problem(api("POST", "/api/v1/categories", json={"name": "x", "slug": root["slug"]}), 409)

    cycle = api("PATCH", f"/api/v1/categories/{root['id']}", json={"parent_id": grandchild["id"]})
    assert any(e["field"] == "parent_id" for e in problem(cycle, 422)["errors"])
    problem(api("PATCH", f"/api/v1/categories/{root['id']}", json={"parent_id": root["id"]}), 422)

    stale = api(
        "PATCH",
        f"/api/v1/categories/{child['id']}",
        json={"name": "Renamed"},
        headers={"If-Match": '"99"'},
    )
    problem(stale, 412)
    renamed = api(
        "PATCH",
        f"/api/v1/categories/{child['id']}",
        json={"name": "Renamed"},
        headers={"If-Match": '"1"'},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["version"] == 2
    assert renamed.headers["ETag"] == '"2"'

    problem(api("DELETE", f"/api/v1/categories/{child['id']}"), 409)  # has a child
    product = new_product(api, category_id=grandchild["id"])
    problem(api("DELETE", f"/api/v1/categories/{grandchild['id']}"), 409)  # has a product
    assert api("DELETE", f"/api/v1/products/{product['id']}").status_code == 204
    assert api("DELETE", f"/api/v1/categories/{grandchild['id']}").status_code == 204
    problem(api("GET", f"/api/v1/categories/{grandchild['id']}"), 404)


# --- products -------------------------------------------------------------------------------


def test_product_lifecycle_and_events(api: Api, public: Api, engine: Engine) -> None:
    code = sku()
    product = api.created(
        "/api/v1/products",
        {"sku": code, "name": "Keyboard", "price": "349.90", "description": "Mechanical"},
    )
    assert product["currency"] == "BRL"
    assert product["status"] == "active"
    assert product["price"] == "349.90"
    assert public("GET", f"/api/v1/products/{product['id']}").json() == product

    problem(api("POST", "/api/v1/products", json={"sku": code, "name": "x", "price": "1.00"}), 409)
    problem(api("POST", "/api/v1/products", json={"sku": sku(), "name": "x", "price": "0.00"}), 422)
    problem(
        api("POST", "/api/v1/products", json={"sku": "bad sku", "name": "x", "price": "1.00"}), 400
    )
    problem(api("PATCH", f"/api/v1/products/{product['id']}", json={"sku": sku()}), 400)

    updated = api("PATCH", f"/api/v1/products/{product['id']}", json={"price": "299.90"})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["price"], updated.json()["version"]) == ("299.90", 2)

    created_events = outbox(engine, "inventory.product.created", product["id"])
    updated_events = outbox(engine, "inventory.product.updated", product["id"])
    assert created_events[0]["sku"] == code
    assert created_events[0]["price"] == "349.90"
    assert updated_events[-1]["price"] == "299.90"
    assert updated_events[-1]["version"] == 2

    receive = {"product_id": product["id"], "quantity": 2, "reason": "purchase 42"}
    api.created("/api/v1/stock/receive", receive)
    problem(api("DELETE", f"/api/v1/products/{product['id']}"), 409)  # stock on hand
    api.created(
        "/api/v1/stock/adjust",
        {"product_id": product["id"], "quantity": -2, "reason": "damaged in transit"},
    )
    assert api("DELETE", f"/api/v1/products/{product['id']}").status_code == 204
    problem(public("GET", f"/api/v1/products/{product['id']}"), 404)
    deleted = outbox(engine, "inventory.product.deleted", product["id"])
    assert deleted[-1]["sku"] == code


def test_product_list_filters_and_cache_invalidation(api: Api, public: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    cheap = new_product(api, name=f"Cable {tag}", price="5.00")
    dear = new_product(api, name=f"Monitor {tag}", price="1500.00", status="inactive")

    def names(**params: Any) -> list[str]:
        response = public("GET", "/api/v1/products", params={"search": tag, **params})
        assert response.status_code == 200, response.text
        return [p["name"] for p in response.json()["data"]]

    assert names() == [f"Cable {tag}", f"Monitor {tag}"]
    assert names(min_price="100.00") == [f"Monitor {tag}"]
    assert names(max_price="100.00") == [f"Cable {tag}"]
    assert names(status="inactive") == [f"Monitor {tag}"]
    listed = public("GET", "/api/v1/products", params={"search": tag, "per_page": 1}).json()
    assert listed["meta"] == {"page": 1, "per_page": 1, "total": 2, "last_page": 2}

    # The list is cached; a change is visible at once all the same.
    api("PATCH", f"/api/v1/products/{cheap['id']}", json={"name": f"Adapter {tag}"})
    assert names() == [f"Adapter {tag}", f"Monitor {tag}"]
    new_product(api, name=f"Bracket {tag}")
    assert names() == [f"Adapter {tag}", f"Bracket {tag}", f"Monitor {tag}"]
    assert api("DELETE", f"/api/v1/products/{dear['id']}").status_code == 204
    assert names() == [f"Adapter {tag}", f"Bracket {tag}"]


# --- stock ----------------------------------------------------------------------------------


def test_receive_and_adjust_write_movements(api: Api) -> None:
    product = new_product(api)
    key = {"Idempotency-Key": f"receive-{uuid.uuid4()}"}
    body = {
        "product_id": product["id"],
        "quantity": 30,
        "reason": "purchase order 7",
        "reference": "PO-7",
    }
    first = api("POST", "/api/v1/stock/receive", json=body, headers=key)
    assert first.status_code == 201, first.text
    movement = first.json()
    assert movement["type"] == "in"
    assert (movement["on_hand_before"], movement["on_hand_after"]) == (0, 30)
    assert movement["user_id"] is not None
    replay = api("POST", "/api/v1/stock/receive", json=body, headers=key)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == movement
    problem(api("POST", "/api/v1/stock/receive", json={**body, "quantity": 31}, headers=key), 422)

    stock = api("GET", f"/api/v1/products/{product['id']}/stock").json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (30, 0, 30)
    assert stock["warehouses"][0]["min_quantity"] == 10  # created on first use

    adjust = {"product_id": product["id"], "reason": "cycle count"}
    below = api("POST", "/api/v1/stock/adjust", json={**adjust, "quantity": -31})
    assert any(e["field"] == "quantity" for e in problem(below, 422)["errors"])
    problem(
        api("POST", "/api/v1/stock/adjust", json={**adjust, "reason": "abc", "quantity": 1}), 400
    )
    down = api.created("/api/v1/stock/adjust", {**adjust, "quantity": -25, "min_quantity": 6})
    assert (down["type"], down["quantity"], down["on_hand_after"]) == ("adjustment", -25, 5)

    low = api("GET", "/api/v1/stock/low", params={"per_page": 100}).json()["data"]
    assert any(row["product_id"] == product["id"] and row["available"] == 5 for row in low)

    unknown = {"product_id": str(uuid.uuid4()), "quantity": 1, "reason": "purchase order 8"}
    problem(api("POST", "/api/v1/stock/receive", json=unknown), 422)


def test_movements_are_keyset_paged(api: Api) -> None:
    product = new_product(api)
    for n in range(5):
        api.created(
            "/api/v1/stock/receive",
            {"product_id": product["id"], "quantity": n + 1, "reason": f"receipt {n}"},
        )
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"product_id": product["id"], "per_page": 2}
        if cursor:
            params["cursor"] = cursor
        page = api("GET", "/api/v1/stock/movements", params=params).json()
        seen += [m["quantity"] for m in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]  # newest first
    problem(api("GET", "/api/v1/stock/movements", params={"cursor": "not-a-cursor"}), 400)
    typed = api(
        "GET", "/api/v1/stock/movements", params={"type": "in", "product_id": product["id"]}
    )
    assert len(typed.json()["data"]) == 5


def test_warehouses_and_reservations(api: Api) -> None:
    code = f"W{uuid.uuid4().hex[:6].upper()}"
    warehouse = api.created("/api/v1/warehouses", {"code": code, "name": "Campinas"})
    assert warehouse["is_default"] is False
    problem(api("POST", "/api/v1/warehouses", json={"code": code, "name": "again"}), 409)
    product = new_product(api)
    api.created(
        "/api/v1/stock/receive",
        {
            "product_id": product["id"],
            "warehouse_id": warehouse["id"],
            "quantity": 4,
            "reason": "transfer in",
        },
    )
    rows = api("GET", f"/api/v1/warehouses/{warehouse['id']}/stock").json()["data"]
    assert [(r["product_id"], r["on_hand"]) for r in rows] == [(product["id"], 4)]
    problem(api("GET", f"/api/v1/stock/reservations/{uuid.uuid4()}"), 404)


def test_partner_keys_made_in_auth_work_here_until_revoked(
    auth_server: ServerThread, admin_token: str, public: Api
) -> None:
    with Api(auth_server.url, admin_token) as auth:
        body = {"name": "ACME catalogue sync", "permissions": ["inventory.products.create"]}
        created = auth.created("/api/v1/api-keys", body)
        key = created["key"]
        product = {"sku": sku(), "name": "Partner widget", "price": "12.50"}

        assert public.post("/api/v1/products", api_key=key, json=product).status_code == 201
        problem(public.get("/api/v1/stock", api_key=key), 403)  # not a permission it holds

        # Auth folds the use marks in whenever it republishes the keys (here: a new key).
        another = {"name": "another", "permissions": ["inventory.products.view"]}
        auth.created("/api/v1/api-keys", another)
        key_path = f"/api/v1/api-keys/{created['id']}"
        assert auth.get(key_path).json()["last_used_at"] is not None
        assert auth.delete(key_path).status_code == 204
        again = {**product, "sku": sku()}
        problem(public.post("/api/v1/products", api_key=key, json=again), 401)

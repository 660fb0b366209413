"""Orders, probed as an attacker would (OWASP API 2023):

* API1 BOLA — another customer's order is out of reach by id for every operation, with the
  same answer as an id that does not exist, and a `customer_id` filter never widens a list;
* API3 property level — a customer cannot set prices, totals, status, discounts, shipping fees
  or another customer's id;
* API4 resource consumption — quantities and line counts are bounded;
* API6 business flows — placing an order needs an `Idempotency-Key`, and one caller's key never
  replays another caller's order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.accounts import Member, Members
from tests.support.customers import HOME
from tests.support.http import Api, unique_cpf, unique_email
from tests.support.problems import refusal
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Shopper:
    member: Member
    customer_id: str
    api: Api


@pytest.fixture(scope="module")
def staff(sales_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    with Api(sales_app.url, root_token) as client:
        yield client


@pytest.fixture(scope="module")
def product_id(inventory_app: ServiceProcess, root_token: str) -> str:
    with Api(inventory_app.url, root_token) as inventory:
        sku = f"SEC-{uuid.uuid4().hex[:10].upper()}"
        product = inventory.created(
            "/api/v1/products", {"sku": sku, "name": "Probe product", "price": "10.00"}
        )
        receipt = {"product_id": product["id"], "quantity": 100, "reason": "Probe stock"}
        inventory("POST", "/api/v1/stock/receive", json=receipt).raise_for_status()
    return str(product["id"])


def _shopper(members: Members, staff: Api, sales_app: ServiceProcess, tag: str) -> Shopper:
    member = members.new(tag=tag)
    body = {
        "name": f"{tag} shopper",
        "email": unique_email(tag),
        "document": unique_cpf(),
        "user_id": member.id,
        "addresses": [HOME],
    }
    customer = staff.created("/api/v1/customers", body)
    return Shopper(member, str(customer["id"]), Api(sales_app.url, member.access_token))


@pytest.fixture(scope="module")
def alice(members: Members, staff: Api, sales_app: ServiceProcess) -> Iterator[Shopper]:
    shopper = _shopper(members, staff, sales_app, "alice")
    yield shopper
    shopper.api.close()


@pytest.fixture(scope="module")
def mallory(members: Members, staff: Api, sales_app: ServiceProcess) -> Iterator[Shopper]:
    shopper = _shopper(members, staff, sales_app, "mallory")
    yield shopper
    shopper.api.close()


def place(api: Api, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return api("POST", "/api/v1/orders", json=body, headers=headers)


def line(product_id: str, quantity: int = 1) -> dict[str, Any]:
    return {"product_id": product_id, "quantity": quantity}


@pytest.fixture(scope="module")
def alices_order(alice: Shopper, product_id: str) -> dict[str, Any]:
    placed = place(alice.api, {"items": [line(product_id)], "payment_method": "pix"})
    assert placed.status_code == 201, placed.text
    order: dict[str, Any] = placed.json()
    return order


BY_ID = {
    "read": ("GET", "", None),
    "history": ("GET", "/history", None),
    "cancel": ("POST", "/cancel", {"reason": "Taken over"}),
}


@pytest.mark.parametrize("operation", sorted(BY_ID))
def test_another_customers_order_is_as_absent_as_one_that_does_not_exist(
    operation: str, mallory: Shopper, alices_order: dict[str, Any], staff: Api
) -> None:
    method, suffix, body = BY_ID[operation]
    absent = str(uuid.uuid4())
    theirs = refusal(
        mallory.api(method, f"/api/v1/orders/{alices_order['id']}{suffix}", json=body), 404
    )
    nobodys = refusal(mallory.api(method, f"/api/v1/orders/{absent}{suffix}", json=body), 404)
    assert theirs["detail"].replace(alices_order["id"], absent) == nobodys["detail"]
    # Mallory's cancel did nothing: the order goes on (to confirmed, as its saga decides).
    assert staff("GET", f"/api/v1/orders/{alices_order['id']}").json()["status"] != "cancelled"


def test_a_list_filter_never_widens_what_a_customer_sees(
    alice: Shopper, mallory: Shopper, alices_order: dict[str, Any]
) -> None:
    for query in ("", f"?customer_id={alice.customer_id}", "?status=pending"):
        listed = mallory.api("GET", f"/api/v1/orders{query}").json()
        assert alices_order["id"] not in [order["id"] for order in listed["data"]], query
    assert alices_order["id"] in [
        o["id"] for o in alice.api("GET", "/api/v1/orders").json()["data"]
    ]


@pytest.mark.parametrize(
    "field",
    ["unit_price", "total", "status", "order_number", "customer_email", "subtotal"],
)
def test_a_customer_cannot_set_what_sales_computes(
    field: str, alice: Shopper, product_id: str
) -> None:
    body = {"items": [line(product_id)], "payment_method": "pix", field: "0.01"}
    if field == "unit_price":
        body = {"items": [{**line(product_id), "unit_price": "0.01"}], "payment_method": "pix"}
    refused = refusal(place(alice.api, body), 400)
    assert "is not allowed" in str(refused["errors"])


@pytest.mark.parametrize(
    "extra",
    [
        {"shipping": "0.00"},
        {"items": [{"product_id": "P", "quantity": 1, "discount": "10.00"}]},
        {"customer_id": "OTHER"},
    ],
    ids=["shipping", "discount", "customer_id"],
)
def test_discounts_fees_and_other_customers_are_staff_only(
    extra: dict[str, Any], alice: Shopper, mallory: Shopper, product_id: str
) -> None:
    body: dict[str, Any] = {"items": [line(product_id)], "payment_method": "pix", **extra}
    if "items" in extra:
        body["items"] = [{**line(product_id), "discount": "10.00"}]
    if "customer_id" in extra:
        body["customer_id"] = mallory.customer_id
    assert (
        refusal(place(alice.api, body), 403)["detail"] == "Missing permission: sales.orders.create"
    )


@pytest.mark.parametrize(
    "items",
    [[], [{"quantity": 0}], [{"quantity": 1_000_001}], [{"quantity": 1}] * 101],
    ids=["none", "zero", "more-than-a-million", "101-lines"],
)
def test_order_sizes_are_bounded(
    items: list[dict[str, Any]], alice: Shopper, product_id: str
) -> None:
    body = {
        "items": [{**item, "product_id": product_id} for item in items],
        "payment_method": "pix",
    }
    refusal(place(alice.api, body), 400)


def test_placing_an_order_needs_an_idempotency_key(alice: Shopper, product_id: str) -> None:
    body = {"items": [line(product_id)], "payment_method": "pix"}
    refused = refusal(alice.api("POST", "/api/v1/orders", json=body), 400)
    assert refused["errors"] == [
        {"field": "Idempotency-Key", "message": "is a required header parameter"}
    ]


def test_one_callers_key_never_replays_another_callers_order(
    alice: Shopper, mallory: Shopper, product_id: str
) -> None:
    body = {"items": [line(product_id)], "payment_method": "pix"}
    key = str(uuid.uuid4())
    first = place(alice.api, body, key)
    assert first.status_code == 201, first.text
    second = place(mallory.api, body, key)
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first.json()["id"]
    assert second.json()["customer_id"] == mallory.customer_id


def test_a_user_who_is_no_customer_places_nothing_and_sees_nothing(
    plain_member: Member, sales_app: ServiceProcess, product_id: str, alices_order: dict[str, Any]
) -> None:
    with Api(sales_app.url, plain_member.access_token) as nobody:
        body = {"items": [line(product_id)], "payment_method": "pix"}
        refused = refusal(place(nobody, body), 422)
        assert refused["errors"] == [
            {"field": "customer_id", "message": "your account is not a customer's"}
        ]
        assert nobody("GET", "/api/v1/orders").json()["data"] == []
        refusal(nobody("GET", f"/api/v1/orders/{alices_order['id']}"), 404)

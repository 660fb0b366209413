"""Orders over HTTP, on the real servers, with auth, inventory, sales and financial running as
`erp serve` processes: placing (pricing, numbers, Idempotency-Key), who sees and cancels what,
and the saga running each order to `confirmed` or `cancelled` with its compensations, and on
through logistics' news (played by the test) to `shipped`, the invoice, and a cancellation
after a failed delivery that refunds.

Products are created in inventory over its API; sales learns them from `inventory.product.*`
or, for one it has not replicated yet, by asking inventory. The simulated gateway decides the
payment by the total's cents (ADR 0012): `.51` is declined.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aio_pika
import pytest
from sqlalchemy import create_engine, text

from services.platform.core.settings import load_settings
from tests.support.accounts import Members
from tests.support.events import assert_conforms, envelope
from tests.support.http import Api, unique_cpf
from tests.support.polling import eventually
from tests.support.problems import problem
from tests.support.processes import ServiceProcess
from tests.support.wire import publish_body

pytestmark = pytest.mark.integration

HOME = {
    "street": "Rua das Flores",
    "number": "100",
    "neighborhood": "Centro",
    "city": "Campinas",
    "state": "SP",
    "zip_code": "13010-000",
}


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return {**scoped_env("orders_api"), "ERP_RETRY_DELAYS": "0.2,0.3,0.5"}


@pytest.fixture(scope="module")
def auth_url(auth_service: ServiceProcess) -> str:
    return auth_service.url


@pytest.fixture
def staff(sales_service: ServiceProcess, admin_token: str) -> Iterator[Api]:
    with Api(sales_service.url, admin_token) as client:
        yield client


@pytest.fixture
def inventory(inventory_service: ServiceProcess, admin_token: str) -> Iterator[Api]:
    with Api(inventory_service.url, admin_token) as client:
        yield client


@pytest.fixture
def financial(financial_service: ServiceProcess, admin_token: str) -> Iterator[Api]:
    with Api(financial_service.url, admin_token) as client:
        yield client


@pytest.fixture
def members(auth_url: str, admin_token: str) -> Members:
    return Members(auth_url, admin_token)


def new_product(inventory: Api, price: str, *, stock: int = 50) -> dict[str, Any]:
    sku = f"ORD-{uuid.uuid4().hex[:10].upper()}"
    product = inventory.created(
        "/api/v1/products", {"sku": sku, "name": f"Product {sku}", "price": price}
    )
    if stock:
        receipt = {"product_id": product["id"], "quantity": stock, "reason": "Opening stock"}
        inventory("POST", "/api/v1/stock/receive", json=receipt).raise_for_status()
    return product


def new_customer(staff: Api, *, user_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Order Customer",
        "email": f"orders-{uuid.uuid4().hex[:10]}@example.com",
        "document": unique_cpf(),
        "addresses": [HOME],
    }
    if user_id is not None:
        body["user_id"] = user_id
    return staff.created("/api/v1/customers", body)


def place(api: Api, body: dict[str, Any], key: str | None = None) -> Any:
    return api(
        "POST", "/api/v1/orders", json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())}
    )


def order_body(
    customer: dict[str, Any] | None, *lines: tuple[dict[str, Any], int], **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [
            {"product_id": product["id"], "quantity": quantity} for product, quantity in lines
        ],
        "payment_method": "pix",
        **extra,
    }
    if customer is not None:
        body["customer_id"] = customer["id"]
    return body


async def settled(api: Api, order_id: str) -> dict[str, Any]:
    """The order once the saga decided it."""

    def decided() -> dict[str, Any] | None:
        order = api("GET", f"/api/v1/orders/{order_id}").json()
        return order if order["status"] != "pending" else None

    return await eventually(decided, within=30)


async def test_an_order_is_priced_numbered_and_confirmed_once_reserved_and_paid(
    staff: Api, inventory: Api, financial: Api
) -> None:
    keyboard = new_product(inventory, "100.00")
    mouse = new_product(inventory, "50.25")
    customer = new_customer(staff)
    response = place(staff, order_body(customer, (keyboard, 2), (mouse, 1)))
    assert response.status_code == 201, response.text
    order = response.json()
    assert response.headers["Location"].endswith(f"/api/v1/orders/{order['id']}")
    assert response.headers["ETag"] == '"1"'
    assert order["order_number"].startswith("ORD-")
    assert (order["subtotal"], order["discount"], order["shipping"], order["total"]) == (
        "250.25",
        "0.00",
        "25.00",
        "275.25",
    )
    assert [(i["sku"], i["unit_price"], i["total"]) for i in order["items"]] == [
        (keyboard["sku"], "100.00", "200.00"),
        (mouse["sku"], "50.25", "50.25"),
    ]
    assert order["shipping_address"] == {**HOME, "complement": None, "country": "BR"}
    assert order["customer_email"] == customer["email"]
    assert (order["status"], order["waiting_for"]) == ("pending", ["stock", "payment"])

    done = await settled(staff, order["id"])
    assert (done["status"], done["stock_status"], done["payment_status"]) == (
        "confirmed",
        "reserved",
        "approved",
    )
    assert done["waiting_for"] == []
    assert done["confirmed_at"] is not None
    payment = financial("GET", f"/api/v1/payments/by-order/{order['id']}").json()
    assert (payment["status"], payment["amount"]) == ("approved", "275.25")
    # Confirmed: the reserved units left the warehouse.

    def shipped_out() -> dict[str, Any] | None:
        stock: dict[str, Any] = inventory("GET", f"/api/v1/products/{keyboard['id']}/stock").json()
        return stock if stock["on_hand"] == 48 else None

    assert (await eventually(shipped_out, within=15))["reserved"] == 0
    history = staff("GET", f"/api/v1/orders/{order['id']}/history").json()["data"]
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "pending"),
        ("pending", "confirmed"),
    ]


async def test_a_declined_payment_cancels_the_order_and_releases_its_stock(
    staff: Api, inventory: Api
) -> None:
    product = new_product(inventory, "10.51")  # + 25.00 shipping = 35.51: declined
    order = place(staff, order_body(new_customer(staff), (product, 1))).json()
    done = await settled(staff, order["id"])
    assert (done["status"], done["payment_status"]) == ("cancelled", "declined")
    assert done["cancellation_reason"].startswith("Payment declined")

    def released() -> dict[str, Any] | None:
        stock: dict[str, Any] = inventory("GET", f"/api/v1/products/{product['id']}/stock").json()
        return stock if stock["reserved"] == 0 else None

    assert (await eventually(released, within=15))["on_hand"] == 50


async def test_no_stock_cancels_the_order_and_refunds_its_payment(
    staff: Api, inventory: Api, financial: Api
) -> None:
    product = new_product(inventory, "20.00", stock=1)
    order = place(staff, order_body(new_customer(staff), (product, 2))).json()
    done = await settled(staff, order["id"])
    assert (done["status"], done["stock_status"]) == ("cancelled", "failed")

    def refunded_or_cancelled() -> dict[str, Any] | None:
        payment = financial("GET", f"/api/v1/payments/by-order/{order['id']}")
        if payment.status_code != 200:
            return None
        body: dict[str, Any] = payment.json()
        return body if body["status"] in ("refunded", "cancelled") else None

    # Approved before the failure arrived: refunded; not charged yet: cancelled. No money kept.
    assert (await eventually(refunded_or_cancelled, within=20))["status"] in (
        "refunded",
        "cancelled",
    )


def test_the_idempotency_key_is_required_and_replays(staff: Api, inventory: Api) -> None:
    product = new_product(inventory, "30.00")
    body = order_body(new_customer(staff), (product, 1))
    missing = staff("POST", "/api/v1/orders", json=body)
    assert problem(missing, 400)["errors"][0]["field"] == "Idempotency-Key"
    key = str(uuid.uuid4())
    first = place(staff, body, key)
    again = place(staff, body, key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    problem(place(staff, {**body, "payment_method": "boleto"}, key), 422)


async def test_what_cannot_be_sold_is_refused_line_by_line(staff: Api, inventory: Api) -> None:
    customer = new_customer(staff)
    gone = new_product(inventory, "5.00", stock=0)
    inventory(
        "PATCH", f"/api/v1/products/{gone['id']}", json={"status": "inactive"}
    ).raise_for_status()
    unknown = {"id": str(uuid.uuid4())}

    def both_refused() -> dict[str, Any] | None:
        # The replica learns of the deactivation from inventory.product.updated, a moment later.
        refused = problem(place(staff, order_body(customer, (gone, 1), (unknown, 1))), 422)
        return refused if len(refused["errors"]) == 2 else None

    refused = await eventually(both_refused, within=10)
    assert refused["errors"] == [
        {"field": "items[0].product_id", "message": "is not on sale (the product is inactive)"},
        {"field": "items[1].product_id", "message": "is not a product of the catalogue"},
    ]
    product = new_product(inventory, "5.00")
    twice = order_body(customer, (product, 1), (product, 2))
    assert problem(place(staff, twice), 422)["errors"] == [
        {"field": "items", "message": "must name each product once"}
    ]
    too_much = order_body(customer, (product, 1))
    too_much["items"][0]["discount"] = "5.01"
    assert problem(place(staff, too_much), 422)["errors"][0]["field"] == "items[0].discount"
    card_only = order_body(customer, (product, 1), installments=3)
    assert problem(place(staff, card_only), 422)["errors"][0]["field"] == "installments"


def test_customers_order_see_and_cancel_only_their_own(
    staff: Api, inventory: Api, members: Members, sales_service: ServiceProcess
) -> None:
    product = new_product(inventory, "40.00")
    alice, bob = members.new(tag="alice"), members.new(tag="bob")
    alice_customer = new_customer(staff, user_id=alice.id)
    new_customer(staff, user_id=bob.id)
    stranger = members.new(tag="nobody")  # a user who is no customer
    with (
        Api(sales_service.url, alice.access_token) as as_alice,
        Api(sales_service.url, bob.access_token) as as_bob,
        Api(sales_service.url, stranger.access_token) as as_stranger,
    ):
        placed = place(as_alice, order_body(None, (product, 1)))
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert order["customer_id"] == alice_customer["id"]
        # Customers pay the catalogue price and the house shipping: no discounts, no fees.
        discounted = order_body(None, (product, 1), shipping="0.00")
        problem(place(as_alice, discounted), 403)
        problem(
            place(
                as_alice,
                order_body(alice_customer, (product, 1)) | {"customer_id": str(uuid.uuid4())},
            ),
            403,
        )
        problem(place(as_stranger, order_body(None, (product, 1))), 422)

        assert [o["id"] for o in as_alice("GET", "/api/v1/orders").json()["data"]] == [order["id"]]
        assert as_bob("GET", "/api/v1/orders").json()["data"] == []
        # Even naming her customer id, Bob sees none of Alice's orders.
        listed = as_bob("GET", f"/api/v1/orders?customer_id={alice_customer['id']}").json()
        assert listed["data"] == []
        for path in (f"/api/v1/orders/{order['id']}", f"/api/v1/orders/{order['id']}/history"):
            problem(as_bob("GET", path), 404)
        problem(
            as_bob("POST", f"/api/v1/orders/{order['id']}/cancel", json={"reason": "Not mine"}), 404
        )

        cancelled = as_alice(
            "POST", f"/api/v1/orders/{order['id']}/cancel", json={"reason": "Changed my mind"}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert (cancelled.json()["status"], cancelled.json()["cancellation_reason"]) == (
            "cancelled",
            "Changed my mind",
        )
        again = as_alice("POST", f"/api/v1/orders/{order['id']}/cancel", json={"reason": "Twice"})
        assert (
            problem(again, 409)["detail"] == "An order that is cancelled cannot become cancelled."
        )
        history = as_alice("GET", f"/api/v1/orders/{order['id']}/history").json()["data"]
        assert history[-1]["actor"] == f"user:{alice.id}"
        assert history[-1]["reason"] == "Changed my mind"
    # Staff see every order.
    assert staff("GET", f"/api/v1/orders/{order['id']}").status_code == 200


def test_order_numbers_run_without_gaps(
    staff: Api, inventory: Api, module_env: Mapping[str, str]
) -> None:
    product = new_product(inventory, "1.00")
    customer = new_customer(staff)
    numbers = []
    for _ in range(3):
        numbers.append(
            int(place(staff, order_body(customer, (product, 1))).json()["order_number"][-6:])
        )
        problem(
            place(staff, order_body(customer, ({"id": str(uuid.uuid4())}, 1))), 422
        )  # no number taken
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]
    settings = load_settings("sales", 8003, module_env)
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            taken = (
                connection.execute(text("SELECT order_number FROM orders ORDER BY order_number"))
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    sequence = [int(number[-6:]) for number in taken if number.startswith(taken[-1][:9])]
    assert sequence == list(range(1, len(sequence) + 1))


async def test_a_cancellation_overtaking_the_saga_leaves_no_stock_reserved_and_no_money_taken(
    staff: Api, inventory: Api, financial: Api
) -> None:
    product = new_product(inventory, "70.00", stock=5)
    order = place(staff, order_body(new_customer(staff), (product, 2))).json()
    cancelled = staff("POST", f"/api/v1/orders/{order['id']}/cancel", json={"reason": "At once"})
    assert cancelled.status_code == 200, cancelled.text

    def settled_elsewhere() -> dict[str, Any] | None:
        # Inventory has seen the cancellation (its reservation, or the tombstone a cancellation
        # that overtook the order leaves, is released); until then, 0 reserved proves nothing.
        reservation = inventory("GET", f"/api/v1/stock/reservations/{order['id']}")
        if reservation.status_code != 200 or reservation.json()["status"] != "released":
            return None
        stock: dict[str, Any] = inventory("GET", f"/api/v1/products/{product['id']}/stock").json()
        payment = financial("GET", f"/api/v1/payments/by-order/{order['id']}")
        if stock["reserved"] != 0 or payment.status_code != 200:
            return None
        paid: dict[str, Any] = payment.json()
        return paid if paid["status"] in ("refunded", "cancelled") else None

    # Whichever of the order and its cancellation each service saw first: nothing is held.
    assert (await eventually(settled_elsewhere, within=30))["status"] in ("refunded", "cancelled")
    stock = inventory("GET", f"/api/v1/products/{product['id']}/stock").json()
    assert (stock["on_hand"], stock["reserved"]) == (5, 0)
    assert staff("GET", f"/api/v1/orders/{order['id']}").json()["status"] == "cancelled"


async def _as_logistics(env: Mapping[str, str], name: str, payload: dict[str, Any]) -> None:
    """Publish one of logistics' events (logistics itself does not run here), checked against
    the AsyncAPI document first."""
    body = envelope(name, payload)
    encoded = json.dumps(body).encode()
    assert_conforms(encoded)
    connection = await aio_pika.connect_robust(env["ERP_AMQP_URL"])
    try:
        channel = await connection.channel(publisher_confirms=True)
        await publish_body(channel, "logistics.events", name, encoded, message_id=body["event_id"])
    finally:
        await connection.close()


async def test_a_failed_delivery_lets_staff_cancel_the_shipped_order_and_refunds_it(
    staff: Api, inventory: Api, financial: Api, module_env: Mapping[str, str]
) -> None:
    product = new_product(inventory, "80.00")
    customer = new_customer(staff)
    order = await settled(staff, place(staff, order_body(customer, (product, 1))).json()["id"])
    assert (order["status"], order["shipment"]) == ("confirmed", None)
    shipment = {
        "shipment_id": str(uuid.uuid4()),
        "order_id": order["id"],
        "order_number": order["order_number"],
        "customer_email": order["customer_email"],
        "tracking_code": "BR7K3M9Q2X4ZP",
    }
    await _as_logistics(
        module_env,
        "logistics.shipment.dispatched",
        {
            **shipment,
            "carrier_code": "CORREIOS",
            "service_type": "standard",
            "estimated_delivery_date": "2026-01-06",
            "dispatched_at": "2026-01-02T09:00:00Z",
        },
    )

    def shipped() -> dict[str, Any] | None:
        found: dict[str, Any] = staff("GET", f"/api/v1/orders/{order['id']}").json()
        return found if found["status"] == "shipped" else None

    on_its_way = await eventually(shipped, within=15)
    assert on_its_way["shipment"] == {
        "id": shipment["shipment_id"],
        "status": "dispatched",
        "tracking_code": "BR7K3M9Q2X4ZP",
        "carrier_code": "CORREIOS",
        "dispatched_at": "2026-01-02T09:00:00Z",
        "delivered_at": None,
        "failed_at": None,
        "failure_reason": None,
    }
    cancel = f"/api/v1/orders/{order['id']}/cancel"
    refused = staff("POST", cancel, json={"reason": "Customer changed their mind"})
    assert problem(refused, 409)["detail"] == (
        "A shipped order can be cancelled only while its shipment has failed."
    )

    # Financial invoiced the dispatched order by itself.
    def invoiced() -> dict[str, Any] | None:
        listed = financial("GET", "/api/v1/invoices", params={"customer_id": customer["id"]})
        found = [i for i in listed.json()["data"] if i["order_id"] == order["id"]]
        return found[0] if found else None

    assert (await eventually(invoiced, within=15))["status"] == "issued"

    await _as_logistics(
        module_env,
        "logistics.shipment.failed",
        {**shipment, "reason": "Address not found", "failed_at": "2026-01-03T11:00:00Z"},
    )

    def failed() -> dict[str, Any] | None:
        found: dict[str, Any] = staff("GET", f"/api/v1/orders/{order['id']}").json()
        return found if found["shipment"]["status"] == "failed" else None

    assert (await eventually(failed, within=15))["shipment"]["failure_reason"] == (
        "Address not found"
    )
    cancelled = staff("POST", cancel, json={"reason": "Undeliverable"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"

    def refunded() -> dict[str, Any] | None:
        payment: dict[str, Any] = financial(
            "GET", f"/api/v1/payments/by-order/{order['id']}"
        ).json()
        invoice = invoiced()
        done = payment["status"] == "refunded" and invoice and invoice["status"] == "cancelled"
        return payment if done else None

    assert (await eventually(refunded, within=20))["amount"] == order["total"]

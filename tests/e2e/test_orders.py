"""Orders placed over HTTP run their sagas across the six processes to `confirmed` or
`cancelled`, and every message of each saga keeps the AsyncAPI document and belongs to one
conversation: one correlation id, each event caused by the one the design says.

The simulated gateway decides by the total's cents (ADR 0012); sales adds 25.00 shipping, so a
12.50 product is approved and a 10.51 one declined.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.capture import Capture, causes, check_causality, names, saga_of, validate_wire
from tests.support.catalog import Product, product_with_stock
from tests.support.customers import customer_with_address
from tests.support.orders import order_request

pytestmark = pytest.mark.integration

CREATED = "sales.order.created"
REQUESTED = "financial.payment.requested"  # the payment, pending, before its charge


async def run_saga(
    wire: Capture,
    sales_api: httpx.AsyncClient,
    customer_id: str,
    lines: list[tuple[Product, int]],
    *last: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Place an order over HTTP, wait for each of the `last` events of its saga and for the
    wire to go quiet; every message meanwhile is checked against the document, the saga for
    causality. The order as placed (201), and its saga."""
    mark = len(wire.messages)
    response = await sales_api.post(
        "/api/v1/orders",
        json=order_request(customer_id, lines),
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    assert order["status"] == "pending"
    for event_name in last:
        await wire.wait_for_event(event_name, order["id"])
    await wire.quiet(1.0)
    validate_wire(wire.since(mark))
    saga = saga_of(wire.since(mark), order["id"])
    check_causality(saga)
    assert names(saga)[0] == CREATED
    created = saga[0]["payload"]
    assert (created["order_number"], created["total"]) == (order["order_number"], order["total"])
    return order, saga


async def status_of(sales_api: httpx.AsyncClient, order: dict[str, Any]) -> str:
    response = await sales_api.get(f"/api/v1/orders/{order['id']}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def test_an_order_in_stock_and_paid_is_confirmed_and_its_stock_leaves(
    wire: Capture, inventory_api: httpx.AsyncClient, sales_api: httpx.AsyncClient
) -> None:
    product = await product_with_stock(inventory_api, 10, tag="E2E")
    customer = await customer_with_address(sales_api, tag="E2E")

    order, saga = await run_saga(
        wire,
        sales_api,
        customer.id,
        [(product, 2)],
        "sales.order.confirmed",
        "inventory.stock.confirmed",
        "logistics.shipment.created",
    )

    answers = [n for n in names(saga) if n not in (CREATED, REQUESTED)][:2]
    assert sorted(answers) == ["financial.payment.processed", "inventory.stock.reserved"]
    assert causes(saga) == {
        CREATED: None,
        REQUESTED: CREATED,
        "inventory.stock.reserved": CREATED,
        "financial.payment.processed": CREATED,
        # Sales confirms on the second answer, whichever it is.
        "sales.order.confirmed": answers[1],
        "inventory.stock.confirmed": "sales.order.confirmed",
        "logistics.shipment.created": "sales.order.confirmed",
    }
    assert await status_of(sales_api, order) == "confirmed"


async def test_an_order_beyond_the_stock_is_cancelled_and_its_payment_refunded(
    wire: Capture, inventory_api: httpx.AsyncClient, sales_api: httpx.AsyncClient
) -> None:
    product = await product_with_stock(inventory_api, 1, tag="E2E")
    customer = await customer_with_address(sales_api, tag="E2E")

    order, saga = await run_saga(
        wire,
        sales_api,
        customer.id,
        [(product, 2)],
        "sales.order.cancelled",
        "financial.payment.refunded",
        "inventory.stock.released",
    )

    assert causes(saga) == {
        CREATED: None,
        REQUESTED: CREATED,
        "inventory.stock.reservation_failed": CREATED,
        "financial.payment.processed": CREATED,
        "sales.order.cancelled": "inventory.stock.reservation_failed",
        "financial.payment.refunded": "sales.order.cancelled",
        "inventory.stock.released": "sales.order.cancelled",
    }
    assert await status_of(sales_api, order) == "cancelled"


async def test_an_order_whose_payment_is_declined_is_cancelled_and_its_stock_released(
    wire: Capture, inventory_api: httpx.AsyncClient, sales_api: httpx.AsyncClient
) -> None:
    product = await product_with_stock(inventory_api, 10, tag="E2E", price="10.51")
    customer = await customer_with_address(sales_api, tag="E2E")

    order, saga = await run_saga(  # 10.51 + 25.00 = 35.51: declined
        wire,
        sales_api,
        customer.id,
        [(product, 1)],
        "sales.order.cancelled",
        "inventory.stock.released",
    )

    assert causes(saga) == {
        CREATED: None,
        REQUESTED: CREATED,
        "inventory.stock.reserved": CREATED,
        "financial.payment.failed": CREATED,
        "sales.order.cancelled": "financial.payment.failed",
        "inventory.stock.released": "sales.order.cancelled",
    }
    assert await status_of(sales_api, order) == "cancelled"

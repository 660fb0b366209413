"""Forged events against `erp serve inventory` on the real RabbitMQ (issue 7, item 11).

Each probe publishes, to `sales.events`, a `sales.order.*` message that a careless consumer
would apply — a quantity of the wrong JSON type, a body whose `event_name` disagrees with its
routing key, an event from a service that does not produce it, an array beyond its `maxItems`,
a number out of range — and asserts the refusal: the message is in `inventory.dlq` at once
(no attempt, well before the first retry), with a reason naming the check and no SQL, and the
product's stock and the order's reservation are as they were.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aio_pika
import httpx
import pytest

from tests.support.catalog import Product, product_with_stock
from tests.support.orders import order_created
from tests.support.processes import ServiceProcess
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

# Long enough to tell "dead-lettered at once" from "dead-lettered after the retries".
RETRY_DELAYS = (1.0, 1.5, 2.0)
SALES_EXCHANGE = "sales.events"
INVENTORY_DLQ = "inventory.dlq"


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return {
        **scoped_env("forged_events"),
        "ERP_RETRY_DELAYS": ",".join(str(delay) for delay in RETRY_DELAYS),
    }


@pytest.fixture(scope="module")
def auth_url(auth_service: ServiceProcess) -> str:
    return auth_service.url


@pytest.fixture
async def api(
    inventory_service: ServiceProcess, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(
        base_url=inventory_service.url, headers=headers, timeout=15
    ) as client:
        yield client


@pytest.fixture
async def channel(
    inventory_service: ServiceProcess, module_env: Mapping[str, str]
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect_robust(module_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def stock_levels(api: httpx.AsyncClient, product: Product) -> tuple[int, int]:
    response = await api.get(f"/api/v1/products/{product.id}/stock")
    assert response.status_code == 200, response.text
    stock = response.json()
    return int(stock["on_hand"]), int(stock["reserved"])


async def reservation_exists(api: httpx.AsyncClient, order_id: str) -> bool:
    response = await api.get(f"/api/v1/stock/reservations/{order_id}")
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


async def publish_raw(
    channel: aio_pika.abc.AbstractChannel, envelope: dict[str, Any], routing_key: str
) -> None:
    """As a producer would, but with whatever body and routing key the forger chose."""
    body = json.dumps(envelope).encode()
    await publish_body(
        channel,
        SALES_EXCHANGE,
        routing_key,
        body,
        message_id=envelope["event_id"],
        correlation_id=envelope["correlation_id"],
    )


async def assert_refused(
    api: httpx.AsyncClient,
    channel: aio_pika.abc.AbstractChannel,
    product: Product,
    forged: dict[str, Any],
    routing_key: str,
    reason: str,
) -> None:
    before = await stock_levels(api, product)
    await publish_raw(channel, forged, routing_key)
    refusal = await take_dead_letter(channel, INVENTORY_DLQ, forged["event_id"])

    assert refusal.header("x-erp-error") == "InvalidMessage"
    assert refusal.header("x-erp-error-reason") == reason
    assert refusal.header("x-erp-attempts") == 0  # refused, never tried
    assert refusal.arrived_after < RETRY_DELAYS[0] + RETRY_DELAYS[1], refusal.arrived_after
    assert refusal.header("x-erp-original-routing-key") == routing_key
    assert json.loads(refusal.body) == forged  # kept as it came, for a human to look at
    assert await stock_levels(api, product) == before
    assert not await reservation_exists(api, forged["payload"]["order_id"])


@pytest.mark.parametrize(
    ("quantity", "shown"),
    [("5", "'5'"), (5.0, "5.0"), (True, "True")],
)
async def test_a_quantity_of_another_json_type_is_not_coerced(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, quantity: Any, shown: str
) -> None:
    product = await product_with_stock(api, quantity=10, tag="FRG")
    forged = order_created([(product, 1)])
    forged["payload"]["items"][0]["quantity"] = quantity
    await assert_refused(
        api,
        channel,
        product,
        forged,
        "sales.order.created",
        f"schema: payload.items.0.quantity: {shown} is not of type 'integer'",
    )


async def test_the_routing_key_decides_what_the_event_is(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    # A body that would reserve, routed as a cancellation: neither is applied.
    product = await product_with_stock(api, quantity=10, tag="FRG")
    forged = order_created([(product, 2)])
    await assert_refused(
        api,
        channel,
        product,
        forged,
        "sales.order.cancelled",
        "routing key: the body's event_name 'sales.order.created' is not the routing key "
        "'sales.order.cancelled'",
    )


async def test_an_order_event_not_from_sales_is_refused(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    product = await product_with_stock(api, quantity=10, tag="FRG")
    forged = order_created([(product, 2)])
    forged["metadata"]["service"] = "notification"
    await assert_refused(
        api,
        channel,
        product,
        forged,
        "sales.order.created",
        "producer: sales.order.created is published by sales, not by 'notification' "
        "(metadata.service)",
    )


async def test_an_order_beyond_max_items_is_refused(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    product = await product_with_stock(api, quantity=1000, tag="FRG")
    forged = order_created([(product, 1)] * 101)
    await assert_refused(
        api,
        channel,
        product,
        forged,
        "sales.order.created",
        "schema: payload.items: at most 100 items, not 101",
    )


async def test_a_quantity_out_of_range_is_refused_at_once_without_sql(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    # Beyond the int4 column: once retried 3 times with the statement in the reason.
    product = await product_with_stock(api, quantity=10, tag="FRG")
    forged = order_created([(product, 1)])
    forged["payload"]["items"][0]["quantity"] = 2**31
    await assert_refused(
        api,
        channel,
        product,
        forged,
        "sales.order.created",
        "schema: payload.items.0.quantity: 2147483648 is greater than the maximum of 1000000",
    )

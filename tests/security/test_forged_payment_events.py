"""Forged events against `erp serve financial` on the real RabbitMQ: the consumers that take
money (`sales.order.created` charges, `sales.order.cancelled` refunds) trust nothing on the
wire.

Each probe publishes, to `sales.events`, a message a careless consumer would apply — a total of
the wrong JSON type or form, a body whose `event_name` disagrees with its routing key, an order
or a cancellation from a service that does not produce it, an order beyond `maxItems` — and
asserts the refusal: the message is in `financial.dlq` at once (no attempt, well before the
first retry), with a reason naming the check, and no payment was made, or refunded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aio_pika
import httpx
import pytest

from tests.support.orders import PricedItem, order_cancelled, order_created, order_totalling
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

# Long enough to tell "dead-lettered at once" from "dead-lettered after the retries".
RETRY_DELAYS = (1.0, 1.5, 2.0)
SALES_EXCHANGE = "sales.events"
FINANCIAL_DLQ = "financial.dlq"


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return {
        **scoped_env("forged_payment_events"),
        "ERP_RETRY_DELAYS": ",".join(str(delay) for delay in RETRY_DELAYS),
    }


@pytest.fixture(scope="module")
def auth_url(auth_service: ServiceProcess) -> str:
    return auth_service.url


@pytest.fixture
async def api(
    financial_service: ServiceProcess, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(
        base_url=financial_service.url, headers=headers, timeout=15
    ) as client:
        yield client


@pytest.fixture
async def channel(
    financial_service: ServiceProcess, module_env: Mapping[str, str]
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect_robust(module_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def payment_status(api: httpx.AsyncClient, order_id: str) -> str | None:
    response = await api.get(f"/api/v1/payments/by-order/{order_id}")
    assert response.status_code in (200, 404), response.text
    return response.json()["status"] if response.status_code == 200 else None


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
    channel: aio_pika.abc.AbstractChannel,
    forged: dict[str, Any],
    routing_key: str,
    reason: str,
) -> None:
    await publish_raw(channel, forged, routing_key)
    refusal = await take_dead_letter(channel, FINANCIAL_DLQ, forged["event_id"])
    assert refusal.header("x-erp-error") == "InvalidMessage"
    assert refusal.header("x-erp-error-reason") == reason
    assert refusal.header("x-erp-attempts") == 0  # refused, never tried
    assert refusal.arrived_after < RETRY_DELAYS[0] + RETRY_DELAYS[1], refusal.arrived_after
    assert refusal.header("x-erp-original-routing-key") == routing_key
    assert json.loads(refusal.body) == forged  # kept as it came, for a human to look at


async def paid(api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel) -> dict[str, Any]:
    """A well-formed order, published and approved: the control, and the target of refunds."""
    created = order_totalling("500.00")
    await publish_raw(channel, created, "sales.order.created")

    async def settled() -> str | None:
        # pending and processing come first: the charge runs after the event's transaction
        found = await payment_status(api, created["payload"]["order_id"])
        return found if found not in (None, "pending", "processing") else None

    outcome = await eventually(settled, what="the payment of a well-formed order", within=15)
    assert outcome == "approved"
    return created


@pytest.mark.parametrize(
    ("total", "reason"),
    [
        (500.0, "schema: payload.total: 500.0 is not of type 'string'"),
        (500, "schema: payload.total: 500 is not of type 'string'"),
        ("5e2", "schema: payload.total: '5e2' does not match '^\\\\d{1,12}\\\\.\\\\d{2}$'"),
    ],
)
async def test_a_total_in_another_form_is_not_coerced(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, total: Any, reason: str
) -> None:
    forged = order_totalling("500.00")
    forged["payload"]["total"] = total
    await assert_refused(channel, forged, "sales.order.created", reason)
    assert await payment_status(api, forged["payload"]["order_id"]) is None


async def test_the_routing_key_decides_what_the_event_is(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    # A body that would charge, routed as a cancellation: neither is applied.
    forged = order_totalling("500.00")
    await assert_refused(
        channel,
        forged,
        "sales.order.cancelled",
        "routing key: the body's event_name 'sales.order.created' is not the routing key "
        "'sales.order.cancelled'",
    )
    assert await payment_status(api, forged["payload"]["order_id"]) is None


async def test_an_order_not_from_sales_charges_nothing(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    forged = order_totalling("500.00")
    forged["metadata"]["service"] = "financial"
    await assert_refused(
        channel,
        forged,
        "sales.order.created",
        "producer: sales.order.created is published by sales, not by 'financial' "
        "(metadata.service)",
    )
    assert await payment_status(api, forged["payload"]["order_id"]) is None


async def test_a_cancellation_not_from_sales_refunds_nothing(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    created = await paid(api, channel)
    forged = order_cancelled(created, "Give me my money back")
    forged["metadata"]["service"] = "notification"
    await assert_refused(
        channel,
        forged,
        "sales.order.cancelled",
        "producer: sales.order.cancelled is published by sales, not by 'notification' "
        "(metadata.service)",
    )
    assert await payment_status(api, created["payload"]["order_id"]) == "approved"


async def test_an_order_beyond_max_items_is_refused(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    forged = order_created([(PricedItem("1.00"), 1)] * 101)
    await assert_refused(
        channel, forged, "sales.order.created", "schema: payload.items: at most 100 items, not 101"
    )
    assert await payment_status(api, forged["payload"]["order_id"]) is None

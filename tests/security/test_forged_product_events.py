"""Forged product events against sales on the real RabbitMQ: the replica sales prices orders
from trusts nothing on the wire.

Sales runs in process on this run's servers (as `erp serve sales` starts it, without HTTP).
Each probe publishes, to `inventory.events`, an `inventory.product.*` message a careless
consumer would apply — a price of the wrong JSON type or form, a body whose `event_name`
disagrees with its routing key, a product event from a service that does not produce it, a
version that is no version, a newer version under another SKU — and asserts the refusal: the
message is in `sales.dlq` (the envelope checks at once, before any attempt), with a reason
naming the check, and the replicated product is as it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aio_pika
import pytest
from sqlalchemy import text
from sqlmodel import select

from services.platform.core.settings import load_settings
from services.platform.runtime.runner import run_service
from services.platform.runtime.service import ServiceContext
from services.sales.service import definition
from services.sales.tables import Product
from tests.support.catalog import product_event
from tests.support.polling import eventually
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

# Long enough to tell "dead-lettered at once" from "dead-lettered after the retries".
RETRY_DELAYS = (1.0, 1.5, 2.0)
INVENTORY_EXCHANGE = "inventory.events"
SALES_DLQ = "sales.dlq"


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return {
        **scoped_env("forged_product_events"),
        "ERP_RETRY_DELAYS": ",".join(str(delay) for delay in RETRY_DELAYS),
    }


@pytest.fixture(scope="module")
async def sales(module_env: Mapping[str, str]) -> AsyncIterator[ServiceContext]:
    async with run_service(definition, load_settings("sales", 8003, module_env)) as ctx:
        yield ctx


@pytest.fixture(scope="module")
async def channel(
    sales: ServiceContext, module_env: Mapping[str, str]
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect_robust(module_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish_raw(
    channel: aio_pika.abc.AbstractChannel, envelope: dict[str, Any], routing_key: str
) -> None:
    """As a producer would, but with whatever body and routing key the forger chose."""
    body = json.dumps(envelope).encode()
    await publish_body(
        channel, INVENTORY_EXCHANGE, routing_key, body, message_id=envelope["event_id"]
    )


async def replicated(sales: ServiceContext, product_id: str) -> tuple[int, str, bool] | None:
    async with sales.database.session() as session:
        found = (
            await session.scalars(
                select(Product).where(Product.product_id == uuid.UUID(product_id))
            )
        ).first()
    return None if found is None else (found.version, found.sku, found.deleted)


async def known_product(sales: ServiceContext, channel: aio_pika.abc.AbstractChannel) -> str:
    """A product in the replica at version 1: the control, and the forgeries' target."""
    product_id = str(uuid.uuid4())
    await publish_raw(channel, product_event("created", product_id, 1), "inventory.product.created")
    await eventually(lambda: replicated(sales, product_id), what="the control product")
    return product_id


async def in_inbox(sales: ServiceContext, event_id: str) -> bool:
    async with sales.database.session() as session:
        found = await session.execute(
            text("SELECT 1 FROM inbox WHERE event_id = :id"), {"id": uuid.UUID(event_id)}
        )
        return found.first() is not None


async def assert_refused(
    sales: ServiceContext,
    channel: aio_pika.abc.AbstractChannel,
    forged: dict[str, Any],
    routing_key: str,
    reason: str,
    *,
    error: str = "InvalidMessage",
    attempts: int = 0,
) -> None:
    product_id = forged["payload"]["product_id"]
    before = await replicated(sales, product_id)
    await publish_raw(channel, forged, routing_key)
    refusal = await take_dead_letter(channel, SALES_DLQ, forged["event_id"])
    assert refusal.header("x-erp-error") == error
    assert refusal.header("x-erp-error-reason") == reason
    assert refusal.header("x-erp-attempts") == attempts
    assert refusal.arrived_after < RETRY_DELAYS[0] + RETRY_DELAYS[1], refusal.arrived_after
    assert refusal.header("x-erp-original-routing-key") == routing_key
    assert json.loads(refusal.body) == forged  # kept as it came, for a human to look at
    assert await replicated(sales, product_id) == before
    assert not await in_inbox(sales, forged["event_id"])


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        (1.5, "schema: payload.price: 1.5 is not of type 'string'"),
        (2, "schema: payload.price: 2 is not of type 'string'"),
        ("1e2", "schema: payload.price: '1e2' does not match '^\\\\d{1,7}\\\\.\\\\d{2}$'"),
    ],
)
async def test_a_price_in_another_form_is_not_coerced(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel, price: Any, reason: str
) -> None:
    forged = product_event("updated", await known_product(sales, channel), 2, price=price)
    await assert_refused(sales, channel, forged, "inventory.product.updated", reason)


async def test_a_version_that_is_no_version_is_refused(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    forged = product_event("updated", await known_product(sales, channel), 2)
    forged["payload"]["version"] = "99"
    await assert_refused(
        sales,
        channel,
        forged,
        "inventory.product.updated",
        "schema: payload.version: '99' is not of type 'integer'",
    )


async def test_the_routing_key_decides_what_the_event_is(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    # An update's body routed as a delete: neither is applied.
    forged = product_event("updated", await known_product(sales, channel), 2)
    await assert_refused(
        sales,
        channel,
        forged,
        "inventory.product.deleted",
        "routing key: the body's event_name 'inventory.product.updated' is not the routing "
        "key 'inventory.product.deleted'",
    )


async def test_a_product_event_not_from_inventory_changes_nothing(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    forged = product_event("deleted", await known_product(sales, channel), 9)
    forged["metadata"]["service"] = "sales"
    await assert_refused(
        sales,
        channel,
        forged,
        "inventory.product.deleted",
        "producer: inventory.product.deleted is published by inventory, not by 'sales' "
        "(metadata.service)",
    )


async def test_a_newer_version_under_another_sku_is_refused(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    product_id = await known_product(sales, channel)
    forged = product_event("updated", product_id, 2, sku="OTHER-SKU-1")
    await assert_refused(
        sales,
        channel,
        forged,
        "inventory.product.updated",
        f"product {product_id}: version 2 changes its SKU, which is immutable",
        error="DeadLetter",
        attempts=1,
    )
    assert await replicated(sales, product_id) == (1, "KB-MECH-001", False)

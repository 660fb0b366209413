"""Sales' product replica on PostgreSQL and the real RabbitMQ: the service runs in process on
this run's servers (`run_service`, as `erp serve sales` starts it, without HTTP), the test
plays inventory and publishes `inventory.product.created|updated|deleted` to
`inventory.events` (each envelope checked against the AsyncAPI document first), then reads
the `products` table. Last writer wins by inventory's version: a redelivered or older event
changes nothing, a delete leaves a tombstone that an older update cannot bring back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
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
from tests.support.events import assert_conforms
from tests.support.polling import eventually
from tests.support.wire import publish_body

pytestmark = pytest.mark.integration

INVENTORY_EXCHANGE = "inventory.events"


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return scoped_env("product_replica")


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


async def publish(channel: aio_pika.abc.AbstractChannel, event: dict[str, Any]) -> None:
    body = json.dumps(event).encode()
    assert_conforms(body)
    await publish_body(
        channel, INVENTORY_EXCHANGE, event["event_name"], body, message_id=event["event_id"]
    )


async def row(sales: ServiceContext, product_id: str) -> Product | None:
    async with sales.database.session() as session:
        found = await session.scalars(
            select(Product).where(Product.product_id == uuid.UUID(product_id))
        )
        return found.first()


async def handled(sales: ServiceContext, event: dict[str, Any]) -> bool:
    """The event is in sales' inbox: handled and committed (whatever it changed)."""
    async with sales.database.session() as session:
        found = await session.execute(
            text("SELECT 1 FROM inbox WHERE event_id = :id"), {"id": uuid.UUID(event["event_id"])}
        )
        return found.first() is not None


async def delivered(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel, event: dict[str, Any]
) -> Product | None:
    """Publish `event`, wait until sales has handled it, and return the product's row."""
    await publish(channel, event)
    await eventually(lambda: handled(sales, event), what=f"{event['event_name']} handled")
    return await row(sales, event["payload"]["product_id"])


def state(found: Product | None) -> tuple[int, str, bool, str] | None:
    if found is None:
        return None
    return found.version, f"{found.price:.2f}", found.deleted, found.name


async def test_created_then_newer_updates_keep_the_newest(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    product_id = str(uuid.uuid4())
    created = await delivered(sales, channel, product_event("created", product_id, 1))
    assert state(created) == (1, "301.90", False, "Mechanical keyboard")
    assert created is not None
    assert created.updated_at == datetime(2026, 12, 1, 10, 1, tzinfo=UTC)
    assert (created.sku, created.currency, created.status) == ("KB-MECH-001", "BRL", "active")

    updated = product_event("updated", product_id, 3, name="Keyboard", status="inactive")
    after = await delivered(sales, channel, updated)
    assert state(after) == (3, "303.90", False, "Keyboard")
    assert after is not None
    assert after.status == "inactive"


async def test_a_redelivered_or_older_event_changes_nothing(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    product_id = str(uuid.uuid4())
    await delivered(sales, channel, product_event("created", product_id, 1))
    newest = product_event("updated", product_id, 4, name="Newest")
    assert state(await delivered(sales, channel, newest)) == (4, "304.90", False, "Newest")

    # The same version again under a new event id (a producer's retry), and older ones.
    again = product_event("updated", product_id, 4, name="Same version, other body")
    older = product_event("updated", product_id, 2, name="Older")
    late_created = product_event("created", product_id, 1, name="Late")
    for event in (again, older, late_created):
        assert state(await delivered(sales, channel, event)) == (4, "304.90", False, "Newest")

    # The very same message twice: the inbox drops the second, the row is unchanged.
    await publish(channel, newest)
    assert state(await delivered(sales, channel, older)) == (4, "304.90", False, "Newest")


async def test_a_delete_is_a_tombstone_no_older_update_resurrects(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    product_id = str(uuid.uuid4())
    await delivered(sales, channel, product_event("created", product_id, 1))
    deleted = await delivered(sales, channel, product_event("deleted", product_id, 3))
    assert state(deleted) == (3, "303.90", True, "Mechanical keyboard")

    late_update = product_event("updated", product_id, 2, name="Overtaken")
    assert state(await delivered(sales, channel, late_update)) == (
        3,
        "303.90",
        True,
        "Mechanical keyboard",
    )


async def test_a_delete_arriving_first_still_wins_over_the_earlier_history(
    sales: ServiceContext, channel: aio_pika.abc.AbstractChannel
) -> None:
    product_id = str(uuid.uuid4())
    await delivered(sales, channel, product_event("deleted", product_id, 2))
    for event in (
        product_event("created", product_id, 1),
        product_event("updated", product_id, 2),
    ):
        assert state(await delivered(sales, channel, event)) == (
            2,
            "302.90",
            True,
            "Mechanical keyboard",
        )

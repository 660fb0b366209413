"""Malformed events (API10 Unsafe consumption of APIs, on the wire): a message that is no
envelope — not JSON, not an object, missing a member the envelope requires, an event or a
version this consumer does not know — is dead-lettered at once (no attempt, no retry) with the
reason in its headers and its body untouched, and changes nothing: no reservation, no stock
reserved, no inbox row. Each one carries a real order for stock that exists, so it would
reserve something if it were handled; `test_a_well_formed_order_is_still_reserved` shows the
consumer still does reserve for well-formed ones afterwards.

Routing keys, producers and payload types are test_forged_events.py's.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.support.catalog import Product
from tests.support.http import Api
from tests.support.orders import order_created
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

SALES_EXCHANGE = "sales.events"
CREATED = "sales.order.created"
INVENTORY_QUEUE = "inventory.queue"
INVENTORY_DLQ = "inventory.dlq"
STOCK = 10


@pytest.fixture(scope="module")
def product(inventory_app: ServiceProcess, root_token: str) -> Product:
    with Api(inventory_app.url, root_token) as api:
        body = {"sku": f"MAL-{uuid.uuid4().hex[:10].upper()}", "name": "Malformed", "price": "4.00"}
        created = api.created("/api/v1/products", body)
        receipt = {"product_id": created["id"], "quantity": STOCK, "reason": "malformed events"}
        api.created("/api/v1/stock/receive", receipt)
    return Product(created["id"], created["sku"], created["name"], created["price"])


@pytest.fixture
async def inventory(
    inventory_app: ServiceProcess, root_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {root_token}"}
    async with httpx.AsyncClient(base_url=inventory_app.url, headers=headers) as client:
        yield client


async def reserved(inventory: httpx.AsyncClient, product: Product) -> int:
    response = await inventory.get(f"/api/v1/products/{product.id}/stock")
    assert response.status_code == 200, response.text
    count: int = response.json()["reserved"]
    return count


async def reservation_status(inventory: httpx.AsyncClient, order_id: str) -> int:
    response = await inventory.get(f"/api/v1/stock/reservations/{order_id}")
    return response.status_code


def in_inbox(inventory_db: Engine, event_id: str) -> bool:
    with inventory_db.connect() as connection:
        found = connection.execute(
            text("SELECT count(*) FROM inbox WHERE CAST(event_id AS TEXT) = :id"), {"id": event_id}
        ).scalar_one()
        return bool(found)


def without(envelope: dict[str, Any], member: str) -> dict[str, Any]:
    return {name: value for name, value in envelope.items() if name != member}


@dataclass(frozen=True)
class Malformed:
    """A message to publish: its body, where it goes, and what the reason must say."""

    body: bytes
    reason: str
    routing_key: str = CREATED
    exchange: str = SALES_EXCHANGE


def cases(order: dict[str, Any]) -> Iterator[tuple[str, Malformed]]:
    """Every malformed message, each carrying `order` (a real sales.order.created)."""
    whole = json.dumps(order).encode()
    yield "truncated-json", Malformed(whole[: len(whole) // 2], "not JSON")
    yield "not-utf8", Malformed(b"\xff\xfe" + whole, "not JSON")
    yield "empty-body", Malformed(b"", "not JSON")
    yield "nested-too-deeply", Malformed(b"[" * 100_000 + b"]" * 100_000, "not JSON")
    not_a_number = json.dumps({**order, "event_version": float("nan")})  # NaN is not JSON
    yield "nan-member", Malformed(not_a_number.encode(), "not JSON")
    yield "json-array", Malformed(json.dumps([order]).encode(), "not a JSON object")
    yield "json-string", Malformed(json.dumps(json.dumps(order)).encode(), "not a JSON object")
    for member in (
        "event_id",
        "event_name",
        "event_version",
        "occurred_at",
        "correlation_id",
        "payload",
        "metadata",
    ):
        yield f"without-{member}", Malformed(json.dumps(without(order, member)).encode(), member)
    yield (
        "unknown-major-version",
        Malformed(
            json.dumps({**order, "event_version": "2.0"}).encode(), "version 2.0 is not supported"
        ),
    )
    # Straight into inventory's queue through the default exchange: no binding filters it.
    for name in ("sales.order.exploded", "auth.user.registered"):
        yield (
            f"unknown-event-{name}",
            Malformed(
                json.dumps({**order, "event_name": name}).encode(),
                "",
                routing_key=INVENTORY_QUEUE,
                exchange="",
            ),
        )


CASES = [name for name, _ in cases(order_created([]))]


@pytest.mark.parametrize("case", CASES)
async def test_a_malformed_event_is_dead_lettered_at_once_and_changes_nothing(
    amqp_channel: aio_pika.abc.AbstractChannel,
    inventory: httpx.AsyncClient,
    inventory_db: Engine,
    product: Product,
    case: str,
) -> None:
    order = order_created([(product, 2)])
    message = dict(cases(order))[case]
    message_id = str(uuid.uuid4())
    await publish_body(
        amqp_channel, message.exchange, message.routing_key, message.body, message_id=message_id
    )

    letter = await take_dead_letter(amqp_channel, INVENTORY_DLQ, message_id, within=15)
    assert letter.header("x-erp-error") == "InvalidMessage"
    assert letter.header("x-erp-attempts") == 0
    reason = letter.header("x-erp-error-reason")
    assert reason, letter.headers
    assert message.reason in reason, reason
    assert letter.header("x-erp-original-routing-key") == message.routing_key
    assert letter.body == message.body
    assert await reservation_status(inventory, order["payload"]["order_id"]) == 404
    assert await reserved(inventory, product) == 0
    assert not await asyncio.to_thread(in_inbox, inventory_db, order["event_id"])


async def test_a_well_formed_order_is_still_reserved(
    amqp_channel: aio_pika.abc.AbstractChannel,
    inventory: httpx.AsyncClient,
    product: Product,
) -> None:
    order = order_created([(product, 2)])
    await publish_body(
        amqp_channel,
        SALES_EXCHANGE,
        CREATED,
        json.dumps(order).encode(),
        message_id=order["event_id"],
    )

    async def reserved_now() -> bool:
        return await reservation_status(inventory, order["payload"]["order_id"]) == 200

    await eventually(reserved_now, what="the reservation of a well-formed order", within=15)
    assert await reserved(inventory, product) == 2

"""The wire of the running platform keeps the AsyncAPI document: what inventory and sales
publish when a product, its stock and a customer are made over HTTP; the saga's first half
(inventory reserving, financial charging) answering a `sales.order.created` the test publishes
as sales will; and the checks themselves, which catch a forged message."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aio_pika
import httpx
import pytest

from tests.support.capture import (
    Capture,
    WireMessage,
    check_causality,
    messages_of,
    names,
    saga_of,
    validate_wire,
    violations,
)
from tests.support.catalog import product_with_stock
from tests.support.customers import customer_with_address
from tests.support.events import envelope
from tests.support.orders import order_created
from tests.support.wire import publish_body

pytestmark = pytest.mark.integration


def about(message: WireMessage, key: str, value: str) -> bool:
    body = message.envelope()
    return body is not None and body.get("payload", {}).get(key) == value


async def test_catalogue_stock_and_customer_events_keep_the_contract(
    wire: Capture, inventory_api: httpx.AsyncClient, sales_api: httpx.AsyncClient
) -> None:
    mark = len(wire.messages)
    product = await product_with_stock(inventory_api, 20, tag="E2E")
    customer = await customer_with_address(sales_api, tag="E2E")

    [created] = await wire.wait_for(
        lambda message: (
            message.routing_key == "inventory.product.created"
            and about(message, "product_id", product.id)
        ),
        what=f"inventory.product.created of {product.id}",
    )
    [announced] = await wire.wait_for(
        lambda message: (
            message.routing_key == "sales.customer.created"
            and about(message, "customer_id", customer.id)
        ),
        what=f"sales.customer.created of {customer.id}",
    )
    await wire.quiet(0.5)

    assert created.exchange == "inventory.events"
    assert announced.exchange == "sales.events"
    assert validate_wire(wire.since(mark)) >= 2
    assert announced.envelope() is not None
    assert announced.envelope()["payload"]["addresses"][0]["is_default"] is True  # type: ignore[index]


# --- the checks catch what a careless producer (or a forger) puts on the wire ---------------


def user_updated(**changes: Any) -> dict[str, Any]:
    """A whole, valid `auth.user.updated` (an event no service consumes: nothing acts on it)."""
    payload = {
        "user_id": str(uuid.uuid4()),
        "name": "Forged",
        "email": "forged@example.com",
        "is_active": True,
        "roles": [],
        "changed_fields": ["name"],
    }
    return envelope("auth.user.updated", payload, **changes)


async def forge(
    channel: aio_pika.abc.AbstractChannel,
    body: dict[str, Any] | bytes,
    *,
    exchange: str = "auth.events",
    routing_key: str = "auth.user.updated",
    **properties: Any,
) -> str:
    """Publish `body` with the properties a good producer sets, except those in `properties`;
    returns the message id to find it on the wire by."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    event_id = body["event_id"] if isinstance(body, dict) else str(uuid.uuid4())
    sent = {
        "content_type": "application/json",
        "delivery_mode": aio_pika.DeliveryMode.PERSISTENT,
        "message_id": event_id,
        "correlation_id": body["correlation_id"] if isinstance(body, dict) else None,
        **properties,
    }
    target = await channel.get_exchange(exchange)
    await target.publish(aio_pika.Message(raw, **sent), routing_key=routing_key, mandatory=True)
    return str(sent["message_id"])


async def seen(wire: Capture, message_id: str) -> WireMessage:
    [message] = await wire.wait_for(
        lambda message: message.message_id == message_id, what=f"message {message_id}"
    )
    return message


async def test_a_well_made_message_passes_the_checks(
    wire: Capture, channel: aio_pika.abc.AbstractChannel
) -> None:
    message = await seen(wire, await forge(channel, user_updated()))
    assert violations(message) == []
    assert validate_wire([message]) == 1


@pytest.mark.parametrize(
    ("forgery", "breach"),
    [
        (
            {"routing_key": "auth.user.exploded"},
            "'auth.user.exploded' is not a declared event",
        ),
        ({"exchange": "sales.events"}, "published on 'sales.events', the document says"),
        ({"delivery_mode": aio_pika.DeliveryMode.NOT_PERSISTENT}, "delivery_mode 1, not 2"),
        ({"content_type": "text/plain"}, "content_type 'text/plain'"),
        ({"message_id": "not-the-event-id"}, "message_id 'not-the-event-id' is not the event_id"),
        ({"correlation_id": None}, "correlation_id property None is not the envelope's"),
        ({"priority": 9}, "priority 9, the document says None"),
        ({"expiration": 60}, "expiration 60.0 s, the document says None s"),
        (
            {
                "body": user_updated(
                    metadata={"service": "sales", "user_id": None, "trace_id": None}
                )
            },
            "metadata.service 'sales', the producer is 'auth'",
        ),
        ({"body": user_updated(event_name="auth.user.deleted")}, "schema: event_name"),
        ({"body": user_updated(payload={"user_id": "me"})}, "schema: payload"),
        ({"body": user_updated(event_version="2.0")}, "event_version '2.0', the document says"),
        ({"body": b'{"event_id": NaN}'}, "the body is not a JSON object"),
    ],
    ids=[
        "unknown-event",
        "wrong-exchange",
        "transient",
        "not-json-content-type",
        "message-id",
        "no-correlation-id",
        "priority",
        "ttl",
        "impostor-producer",
        "event-name",
        "payload",
        "version",
        "not-json",
    ],
)
async def test_a_forged_message_is_caught(
    wire: Capture, channel: aio_pika.abc.AbstractChannel, forgery: dict[str, Any], breach: str
) -> None:
    options = dict(forgery)
    body = options.pop("body", user_updated())
    message = await seen(wire, await forge(channel, body, **options))
    assert any(breach in problem for problem in violations(message)), violations(message)
    with pytest.raises(AssertionError, match="the wire breaks the contract"):
        validate_wire([message])


# --- the saga's first half, and dead letters, from an order sales never placed ---------------


async def test_an_order_sales_never_placed_is_answered_in_its_conversation_then_refused(
    wire: Capture, channel: aio_pika.abc.AbstractChannel, inventory_api: httpx.AsyncClient
) -> None:
    product = await product_with_stock(inventory_api, 10, tag="E2E")
    created = order_created([(product, 2)])  # as sales would publish it; sales has no such order
    order_id = created["payload"]["order_id"]
    mark = len(wire.messages)
    await publish_body(
        channel,
        "sales.events",
        "sales.order.created",
        json.dumps(created).encode(),
        message_id=created["event_id"],
        correlation_id=created["correlation_id"],
    )

    reserved = await wire.wait_for_event("inventory.stock.reserved", order_id)
    processed = await wire.wait_for_event("financial.payment.processed", order_id)
    # Sales refuses both answers: no order of its own has that id.
    refused = await wire.wait_for(
        lambda message: message.dead_letter and order_id.encode() in message.body,
        count=2,
        what=f"sales' dead letters of order {order_id}",
    )
    await wire.quiet(0.5)

    # The events of the saga keep the contract and form one conversation...
    validate_wire(messages_of(wire.since(mark), order_id))
    saga = saga_of(wire.since(mark), order_id)
    check_causality(saga)
    assert names(saga)[0] == "sales.order.created"
    assert sorted(names(saga)[1:]) == [
        "financial.payment.processed",
        "financial.payment.requested",
        "inventory.stock.reserved",
    ]
    for answer in (reserved, processed):
        assert answer["correlation_id"] == created["correlation_id"]
        assert answer["causation_id"] == created["event_id"]
    # ... and the wire as a whole does not: the dead letters are reported, with their reasons.
    assert sorted(message.header("x-erp-original-routing-key") for message in refused) == [
        "financial.payment.processed",
        "inventory.stock.reserved",
    ]
    with pytest.raises(AssertionError, match=f"dead-lettered to sales.dlq .*{order_id}"):
        validate_wire(wire.since(mark))

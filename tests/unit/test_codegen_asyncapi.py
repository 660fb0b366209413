"""Reading the AsyncAPI conventions: events, exchanges, queues, dead-lettering, definitions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tools.codegen.asyncapi import (
    events_json_schema,
    read_events,
    render_definitions,
    render_publishers,
    render_topology,
)
from tools.codegen.common import CodegenError


def _exchange_channel(address: str, exchange: str, kind: str = "topic", **extra: Any) -> Any:
    return {
        "address": address,
        "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": exchange, "type": kind}}},
        **extra,
    }


def _queue_channel(name: str, extension: dict[str, Any], **extra: Any) -> Any:
    return {
        "address": name,
        "bindings": {"amqp": {"is": "queue", "queue": {"name": name, "durable": True}}},
        "x-erp-queue": extension,
        **extra,
    }


DOCUMENT: dict[str, Any] = {
    "asyncapi": "3.0.0",
    "info": {"title": "t", "version": "1.0.0"},
    "channels": {
        "orderCreated": _exchange_channel(
            "sales.order.created",
            "sales.events",
            messages={"orderCreated": {"$ref": "#/components/messages/orderCreated"}},
        ),
        "deadLetters": _exchange_channel("dlx", "dlx", "direct"),
        "stockQueue": _queue_channel(
            "inventory.queue",
            {
                "service": "inventory",
                "type": "quorum",
                "arguments": {"x-delivery-limit": 10},
                "dead-letter": {
                    "exchange": "dlx",
                    "routing-key": "inventory.dlq",
                    "queue": "inventory.dlq",
                },
                "bindings": [{"exchange": "sales.events", "routing-key": "sales.order.*"}],
            },
            messages={"orderCreated": {"$ref": "#/components/messages/orderCreated"}},
        ),
        "stockDlq": _queue_channel(
            "inventory.dlq",
            {
                "service": "inventory",
                "type": "classic",
                "arguments": {},
                "bindings": [{"exchange": "dlx", "routing-key": "inventory.dlq"}],
            },
        ),
    },
    "operations": {
        "publishOrderCreated": {
            "action": "send",
            "channel": {"$ref": "#/channels/orderCreated"},
            "messages": [{"$ref": "#/channels/orderCreated/messages/orderCreated"}],
            "x-erp-service": "sales",
            "bindings": {"amqp": {"deliveryMode": 2, "priority": 3, "expiration": 60000}},
        },
        "inventoryReceives": {
            "action": "receive",
            "channel": {"$ref": "#/channels/stockQueue"},
            "messages": [{"$ref": "#/channels/stockQueue/messages/orderCreated"}],
            "x-erp-service": "inventory",
        },
    },
    "components": {
        "messages": {
            "orderCreated": {
                "name": "sales.order.created",
                "x-erp-event-version": "1.0",
                "payload": {"$ref": "#/components/schemas/SalesOrderCreatedEvent"},
            }
        },
        "schemas": {
            "EventEnvelope": {"type": "object", "properties": {"payload": {"type": "object"}}},
            "SalesOrderCreatedPayload": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
            },
            "SalesOrderCreatedEvent": {
                "allOf": [
                    {"$ref": "#/components/schemas/EventEnvelope"},
                    {
                        "properties": {
                            "payload": {"$ref": "#/components/schemas/SalesOrderCreatedPayload"}
                        }
                    },
                ]
            },
        },
    },
}


def test_events_come_from_send_operations() -> None:
    (event,) = read_events(DOCUMENT, "erp.yaml").events
    assert event.name == "sales.order.created"
    assert (event.exchange, event.routing_key, event.producer) == (
        "sales.events",
        "sales.order.created",
        "sales",
    )
    assert (event.persistent, event.priority, event.ttl_ms) == (True, 3, 60000)
    assert event.payload_schema == "SalesOrderCreatedPayload"
    assert event.envelope_schema == "SalesOrderCreatedEvent"
    assert (event.constant, event.function) == (
        "SALES_ORDER_CREATED",
        "publish_sales_order_created",
    )


def test_queues_carry_dead_lettering_and_consumed_events() -> None:
    parsed = read_events(DOCUMENT, "erp.yaml")
    assert [exchange.name for exchange in parsed.exchanges] == ["dlx", "sales.events"]
    (queue,) = parsed.queues  # the DLQ is not a consuming queue
    assert queue.arguments == {
        "x-dead-letter-exchange": "dlx",
        "x-dead-letter-routing-key": "inventory.dlq",
        "x-delivery-limit": 10,
        "x-queue-type": "quorum",
    }
    assert queue.bindings == (("sales.events", "sales.order.*"),)
    assert queue.consumes == ("sales.order.created",)
    assert queue.dead_letter.name == "inventory.dlq"
    assert queue.dead_letter.arguments == {"x-queue-type": "classic"}


def test_definitions_hold_exchanges_queues_and_bindings() -> None:
    definitions = json.loads(render_definitions(read_events(DOCUMENT, "erp.yaml")))
    assert definitions["vhosts"] == [{"name": "/"}]
    assert [x["name"] for x in definitions["exchanges"]] == ["dlx", "sales.events"]
    assert [q["name"] for q in definitions["queues"]] == ["inventory.dlq", "inventory.queue"]
    assert [(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]] == [
        ("dlx", "inventory.dlq", "inventory.dlq"),
        ("sales.events", "inventory.queue", "sales.order.*"),
    ]


def test_rendered_modules_compile() -> None:
    parsed = read_events(DOCUMENT, "specs/asyncapi/erp.yaml")
    for source in (render_publishers(parsed), render_topology(parsed)):
        assert source.startswith("# Generated by tools/codegen from specs/asyncapi/erp.yaml")
        compile(source, "generated.py", "exec")
    schema = events_json_schema(parsed)
    assert schema["anyOf"] == [{"$ref": "#/definitions/SalesOrderCreatedEvent"}]
    assert "#/components/" not in json.dumps(schema)


def _broken(change: str) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    extension = document["channels"]["stockQueue"]["x-erp-queue"]
    if change == "unknown exchange":
        extension["bindings"][0]["exchange"] = "nowhere.events"
    elif change == "no dead letter":
        del extension["dead-letter"]
    elif change == "dlq not bound":
        document["channels"]["stockDlq"]["x-erp-queue"]["bindings"] = []
    elif change == "no producer service":
        del document["operations"]["publishOrderCreated"]["x-erp-service"]
    elif change == "payload not a ref":
        document["components"]["messages"]["orderCreated"]["payload"] = {"type": "object"}
    elif change == "reserved argument":
        extension["arguments"]["x-dead-letter-exchange"] = "other"
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("unknown exchange", "undeclared exchange nowhere.events"),
        ("no dead letter", "dead-letter"),
        ("dlq not bound", "must be bound to dlx"),
        ("no producer service", "x-erp-service"),
        ("payload not a ref", "components.schemas"),
        ("reserved argument", "x-dead-letter-exchange"),
    ],
)
def test_inconsistent_documents_are_refused(change: str, message: str) -> None:
    with pytest.raises(CodegenError, match=message):
        read_events(_broken(change), "erp.yaml")

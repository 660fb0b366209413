"""Reading the AsyncAPI conventions: events, exchanges, queues, dead-lettering, definitions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tools.codegen.asyncapi import (
    consumer_protocols,
    events_json_schema,
    read_events,
    render_consumers,
    render_definitions,
    render_publishers,
    render_schemas,
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
    for source in (render_publishers(parsed), render_topology(parsed), render_consumers(parsed)):
        assert source.startswith("# Generated by tools/codegen from specs/asyncapi/erp.yaml")
        compile(source, "generated.py", "exec")
    schema = events_json_schema(parsed)
    assert schema["anyOf"] == [{"$ref": "#/definitions/SalesOrderCreatedEvent"}]
    assert "#/components/" not in json.dumps(schema)


def test_every_event_gets_the_schema_of_its_whole_envelope() -> None:
    namespace: dict[str, Any] = {}
    source = render_schemas(read_events(DOCUMENT, "erp.yaml"))
    exec(compile(source, "schemas.py", "exec"), namespace)
    schema = namespace["ENVELOPE_SCHEMAS"]["sales.order.created"]
    assert schema["$ref"] == "#/definitions/SalesOrderCreatedEvent"
    assert schema["definitions"] is namespace["DEFINITIONS"]
    payload = schema["definitions"]["SalesOrderCreatedEvent"]["allOf"][1]["properties"]["payload"]
    assert payload == {"$ref": "#/definitions/SalesOrderCreatedPayload"}


@pytest.mark.parametrize(
    "keyword",
    [{"const": "x"}, {"exclusiveMinimum": 0}, {"propertyNames": {"pattern": "^a"}}],
)
def test_event_schemas_beyond_draft_4_are_refused(keyword: dict[str, Any]) -> None:
    # Consumers validate with Draft 4, which would ignore these keywords: a silent hole.
    document = copy.deepcopy(DOCUMENT)
    document["components"]["schemas"]["SalesOrderCreatedPayload"]["properties"]["id"] |= keyword
    with pytest.raises(CodegenError, match="not JSON Schema draft 4"):
        render_schemas(read_events(document, "erp.yaml"))


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
    elif change == "unknown inbox":
        extension["inbox"] = "memory"
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
        ("unknown inbox", "x-erp-queue.inbox must be one of"),
    ],
)
def test_inconsistent_documents_are_refused(change: str, message: str) -> None:
    with pytest.raises(CodegenError, match=message):
        read_events(_broken(change), "erp.yaml")


def _flat(source: str) -> str:
    """The source on one line, as a formatter would not wrap it."""
    return " ".join(source.split()).replace("( ", "(").replace(" )", ")")


def _namespace(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "consumers.py", "exec"), namespace)
    return namespace


def test_each_consuming_service_gets_a_protocol_with_a_method_per_event() -> None:
    parsed = read_events(DOCUMENT, "specs/asyncapi/erp.yaml")
    source = render_consumers(parsed)
    assert "class InventoryConsumers(Protocol):" in source
    assert (
        "async def on_sales_order_created(self, uow: UnitOfWork, event: SalesOrderCreatedEvent)"
        in _flat(source)
    )
    assert "from generated.events.models import (\n    SalesOrderCreatedEvent,\n)" in source
    assert "from services.platform import UnitOfWork\n" in source
    protocol = _namespace(source)["InventoryConsumers"]
    assert [name for name in vars(protocol) if name.startswith("on_")] == ["on_sales_order_created"]


def test_a_service_without_a_database_gets_the_context() -> None:
    document = copy.deepcopy(DOCUMENT)
    document["channels"]["stockQueue"]["x-erp-queue"]["inbox"] = "redis"
    parsed = read_events(document, "erp.yaml")
    assert parsed.queues[0].inbox == "redis"
    assert "inbox='redis'" in render_topology(parsed)
    source = _flat(render_consumers(parsed))
    assert (
        "async def on_sales_order_created(self, ctx: ServiceContext, "
        "event: SalesOrderCreatedEvent)" in source
    )
    assert "UnitOfWork" not in source
    assert "None" not in source.split("async def", 1)[1].split("->")[0]  # never a None cast


def test_consumer_method_names_must_not_collide() -> None:
    document = copy.deepcopy(DOCUMENT)
    clash = copy.deepcopy(document["components"]["messages"]["orderCreated"])
    clash["name"] = "sales.order_created"  # also on_sales_order_created
    document["components"]["messages"]["orderClash"] = clash
    document["channels"]["orderClash"] = _exchange_channel(
        "sales.order_created",
        "sales.events",
        messages={"orderClash": {"$ref": "#/components/messages/orderClash"}},
    )
    document["channels"]["stockQueue"]["messages"]["orderClash"] = {
        "$ref": "#/components/messages/orderClash"
    }
    document["operations"]["publishClash"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/orderClash"},
        "messages": [{"$ref": "#/channels/orderClash/messages/orderClash"}],
        "x-erp-service": "sales",
    }
    document["operations"]["inventoryReceives"]["messages"].append(
        {"$ref": "#/channels/stockQueue/messages/orderClash"}
    )
    parsed = read_events(document, "erp.yaml")
    with pytest.raises(CodegenError, match="both make the consumer method on_sales_order_created"):
        consumer_protocols(parsed)


def test_a_service_that_consumes_nothing_gets_no_protocol() -> None:
    document = copy.deepcopy(DOCUMENT)
    del document["operations"]["inventoryReceives"]
    parsed = read_events(document, "erp.yaml")
    assert consumer_protocols(parsed) == []
    assert "__all__ = []" in render_consumers(parsed)

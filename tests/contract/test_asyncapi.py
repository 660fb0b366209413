"""The AsyncAPI document: valid under the official AsyncAPI 3.0.0 JSON Schema, and coherent
(DESIGN §9 item 5): every event has a payload schema, operations only use their channel's
messages, queues bind only to declared exchanges, and every bound or consumed routing key has
a producer.

The official schema comes from the npm package installed by `make install`:
    npm install --prefix .tools @asyncapi/specs@6.11.1
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = REPO_ROOT / "specs" / "asyncapi" / "erp.yaml"
ASYNCAPI_SCHEMA = (
    REPO_ROOT / ".tools" / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"
)
ASYNCAPI_SCHEMA_INSTALL = "npm install --prefix .tools @asyncapi/specs@6.11.1"

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    if not ASYNCAPI_SCHEMA.is_file():
        pytest.fail(f"{ASYNCAPI_SCHEMA} is missing: run `make install` ({ASYNCAPI_SCHEMA_INSTALL})")
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    # The bundled schema keeps each definition under its own `$id`: register them all.
    resources = [(schema["$id"], DRAFT7.create_resource(schema))]
    resources += [
        (uri, DRAFT7.create_resource(part)) for uri, part in schema["definitions"].items()
    ]
    return Draft7Validator(schema, registry=Registry().with_resources(resources))


# ------------------------------------------------------------------------------ helpers


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"unresolvable reference {ref}"
        assert token in node, f"unresolvable reference {ref}"
        node = node[token]
    return node


def deref(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(document, node["$ref"])
    return node


def operations(document: dict[str, Any], action: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for operation_id, operation in document["operations"].items():
        if operation["action"] == action:
            yield operation_id, operation


def channel_id(operation: dict[str, Any]) -> str:
    ref = operation["channel"]["$ref"]
    assert ref.startswith("#/channels/"), ref
    return str(ref.removeprefix("#/channels/"))


def amqp(node: dict[str, Any]) -> dict[str, Any]:
    return dict((node.get("bindings") or {}).get("amqp") or {})


def exchanges(document: dict[str, Any]) -> dict[str, str]:
    """Exchange name → type, from the `is: routingKey` channels."""
    found: dict[str, str] = {}
    for channel in document["channels"].values():
        binding = amqp(channel)
        if binding.get("is") == "routingKey" and "exchange" in binding:
            found[binding["exchange"]["name"]] = binding["exchange"].get("type", "topic")
    return found


def queue_channels(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: channel
        for name, channel in document["channels"].items()
        if amqp(channel).get("is") == "queue"
    }


def produced(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Event name → (exchange, routing key) of every message a send operation publishes."""
    found: dict[str, tuple[str, str]] = {}
    for _, operation in operations(document, "send"):
        channel = document["channels"][channel_id(operation)]
        exchange = amqp(channel)["exchange"]["name"]
        for ref in operation["messages"]:
            found[deref(document, ref)["name"]] = (exchange, channel["address"])
    return found


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more."""

    def match(words: list[str], keys: list[str]) -> bool:
        if not words:
            return not keys
        head, rest = words[0], words[1:]
        if head == "#":
            return any(match(rest, keys[index:]) for index in range(len(keys) + 1))
        return bool(keys) and head in ("*", keys[0]) and match(rest, keys[1:])

    return match(pattern.split("."), routing_key.split("."))


def routes(exchange_type: str, pattern: str, routing_key: str) -> bool:
    if exchange_type == "topic":
        return topic_matches(pattern, routing_key)
    return exchange_type == "fanout" or pattern == routing_key


# ------------------------------------------------------------------------------ tests


def test_document_is_valid_asyncapi_3(document: dict[str, Any], validator: Draft7Validator) -> None:
    assert document["asyncapi"] == "3.0.0"
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}" for error in errors
    )


def test_the_validator_rejects_an_invalid_document(
    document: dict[str, Any], validator: Draft7Validator
) -> None:
    broken = json.loads(json.dumps(document))
    first = next(iter(broken["operations"].values()))
    first["action"] = "publish"  # AsyncAPI 2 wording
    assert list(validator.iter_errors(broken))


def test_every_event_has_a_payload_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "EventEnvelope" in schemas
    for key, message in document["components"]["messages"].items():
        assert message.get("name"), key
        assert re.fullmatch(r"\d+\.\d+", str(message.get("x-erp-event-version"))), key
        envelope_ref = message["payload"]["$ref"]
        assert envelope_ref.startswith("#/components/schemas/"), key
        envelope = resolve(document, envelope_ref)
        parts = [envelope, *[deref(document, part) for part in envelope.get("allOf", [])]]
        payload_refs = [
            part["properties"]["payload"]["$ref"]
            for part in parts
            if "$ref" in (part.get("properties") or {}).get("payload", {})
        ]
        assert payload_refs, f"{key}: the envelope's payload property must $ref a schema"
        payload = resolve(document, payload_refs[-1])
        assert payload.get("type") == "object", key
        assert payload.get("properties"), key


def test_event_name_is_the_routing_key(document: dict[str, Any]) -> None:
    for _, operation in operations(document, "send"):
        channel = document["channels"][channel_id(operation)]
        for ref in operation["messages"]:
            assert deref(document, ref)["name"] == channel["address"]


def test_operation_messages_belong_to_their_channel(document: dict[str, Any]) -> None:
    for operation_id, operation in document["operations"].items():
        channel = channel_id(operation)
        assert operation.get("x-erp-service"), operation_id
        assert operation["messages"], operation_id
        for ref in operation["messages"]:
            assert ref["$ref"].startswith(f"#/channels/{channel}/messages/"), (operation_id, ref)
            resolve(document, ref["$ref"])


def test_receive_operations_use_their_services_queue(document: dict[str, Any]) -> None:
    queues = queue_channels(document)
    for operation_id, operation in operations(document, "receive"):
        channel = channel_id(operation)
        assert channel in queues, f"{operation_id} receives from a non-queue channel {channel}"
        assert queues[channel]["x-erp-queue"]["service"] == operation["x-erp-service"]


def test_every_queue_binding_names_a_declared_exchange(document: dict[str, Any]) -> None:
    declared = exchanges(document)
    for name, channel in queue_channels(document).items():
        extension = channel["x-erp-queue"]
        for binding in extension["bindings"]:
            assert binding["exchange"] in declared, (name, binding)
        if "dead-letter" in extension:
            assert extension["dead-letter"]["exchange"] in declared, name
            dead_letter_queue = extension["dead-letter"]["queue"]
            assert any(
                amqp(other)["queue"]["name"] == dead_letter_queue
                for other in queue_channels(document).values()
            ), f"{name}: dead-letter queue {dead_letter_queue} is not declared"


def test_every_bound_routing_key_has_a_producer(document: dict[str, Any]) -> None:
    declared = exchanges(document)
    dead_letter_exchanges = {
        channel["x-erp-queue"]["dead-letter"]["exchange"]
        for channel in queue_channels(document).values()
        if "dead-letter" in channel["x-erp-queue"]
    }
    sent = produced(document).values()
    for name, channel in queue_channels(document).items():
        for binding in channel["x-erp-queue"]["bindings"]:
            if binding["exchange"] in dead_letter_exchanges:
                continue  # dead letters are routed by the broker and the consumer kit
            kind = declared[binding["exchange"]]
            assert any(
                exchange == binding["exchange"] and routes(kind, binding["routing-key"], key)
                for exchange, key in sent
            ), f"{name}: nothing is published to {binding['exchange']} {binding['routing-key']}"


def test_every_consumed_event_has_a_producer_and_reaches_the_queue(
    document: dict[str, Any],
) -> None:
    declared = exchanges(document)
    sent = produced(document)
    queues = queue_channels(document)
    for operation_id, operation in operations(document, "receive"):
        bindings = queues[channel_id(operation)]["x-erp-queue"]["bindings"]
        for ref in operation["messages"]:
            event = deref(document, ref)["name"]
            assert event in sent, f"{operation_id}: {event} has no send operation"
            exchange, key = sent[event]
            assert any(
                binding["exchange"] == exchange
                and routes(declared[exchange], binding["routing-key"], key)
                for binding in bindings
            ), f"{operation_id}: no binding routes {event} to the queue"


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("auth.user.*", "auth.user.registered", True),
        ("auth.user.*", "auth.user.a.b", False),
        ("auth.#", "auth.user.registered", True),
        ("#", "sales.order.created", True),
        ("#.created", "sales.order.created", True),
        ("sales.order.created", "sales.order.cancelled", False),
    ],
)
def test_topic_matching(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected

"""Messages as the AsyncAPI document has them: check one off the wire against it (the contract,
not our models), or make one as a producer would; and made-up events and queues named the way
the document names them, for the kit's tests."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from uuid import uuid4

import yaml
from jsonschema import Draft7Validator
from pydantic import BaseModel

from services.platform.core.contracts import Binding, EventSpec, QueueSpec

ASYNCAPI = Path(__file__).resolve().parents[2] / "specs" / "asyncapi" / "erp.yaml"


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return document


def assert_conforms(body: bytes) -> dict[str, Any]:
    """Validate an envelope against the schema of the message the document names for it."""
    envelope: dict[str, Any] = json.loads(body)
    messages = _document()["components"]["messages"]
    keys = [key for key, message in messages.items() if message["name"] == envelope["event_name"]]
    assert keys, f"{envelope['event_name']} is not declared in {ASYNCAPI.name}"
    # Refs inside the document are "#/components/...": validate with the components as the root.
    schema = {
        "$ref": f"#/components/messages/{keys[0]}/payload",
        "components": _document()["components"],
    }
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(envelope), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    return envelope


def envelope(
    event_name: str,
    payload: Mapping[str, Any],
    /,
    *,
    service: str | None = None,
    correlation_id: str | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A whole envelope of `event_name` as its producer (`service`, by default the event's
    prefix) publishes it: a new event_id, now, a conversation of its own unless given; any
    other member can be given (`changes`)."""
    return {
        "event_id": str(uuid4()),
        "event_name": event_name,
        "event_version": "1.0",
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "correlation_id": correlation_id or str(uuid4()),
        "causation_id": None,
        "payload": dict(payload),
        "metadata": {
            "service": service or event_name.split(".")[0],
            "user_id": None,
            "trace_id": None,
        },
        **changes,
    }


def event_spec(name: str, payload_model: type[BaseModel], **options: Any) -> EventSpec:
    """`<service>.<entity>.<happened>`, produced by `<service>` on its exchange
    `<service>.events` with the name as routing key; `options` set the other fields."""
    producer = name.split(".")[0]
    spec = EventSpec(
        name=name,
        version="1.0",
        exchange=f"{producer}.events",
        routing_key=name,
        producer=producer,
        payload_model=payload_model,
    )
    return dataclasses.replace(spec, **options)


def queue_spec(
    name: str, bindings: Iterable[Binding], consumes: Iterable[str], **arguments: Any
) -> QueueSpec:
    """`<service>.queue`-like: dead letters go to `<service>.dlq` through `dlx`; a quorum queue
    unless `arguments` say otherwise."""
    service = name.split(".")[0]
    return QueueSpec(
        name=name,
        service=service,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "dlx",
            "x-dead-letter-routing-key": f"{service}.dlq",
            **arguments,
        },
        bindings=tuple(bindings),
        dead_letter_exchange="dlx",
        dead_letter_queue=f"{service}.dlq",
        dead_letter_routing_key=f"{service}.dlq",
        consumes=tuple(consumes),
    )

"""JSON Schemas of made-up events, shaped like generated/events/schemas.py's (the generated
`EventEnvelope` with the event's name and payload), for kit tests that run consumers of test
events: the consumer wrapper checks every message against such a schema before parsing it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.platform.core.contracts import JsonSchema

_UUID = {"type": "string", "format": "uuid"}
_NULLABLE_UUID = {"type": ["string", "null"], "format": "uuid"}


def envelope_schema(event_name: str, payload: Mapping[str, Any]) -> JsonSchema:
    """The whole envelope of `event_name` with `payload` (a JSON Schema) as its payload."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "event_id",
            "event_name",
            "event_version",
            "occurred_at",
            "correlation_id",
            "payload",
            "metadata",
        ],
        "properties": {
            "event_id": _UUID,
            "event_name": {"type": "string", "enum": [event_name]},
            "event_version": {"type": "string", "pattern": r"^\d+\.\d+$"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "correlation_id": _UUID,
            "causation_id": _NULLABLE_UUID,
            "payload": dict(payload),
            "metadata": {
                "type": "object",
                "additionalProperties": False,
                "required": ["service"],
                "properties": {
                    "service": {"type": "string", "minLength": 1},
                    "user_id": _NULLABLE_UUID,
                    "trace_id": {"type": ["string", "null"]},
                },
            },
        },
    }


def object_schema(**properties: Mapping[str, Any]) -> JsonSchema:
    """A closed object whose every property is required."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": {name: dict(schema) for name, schema in properties.items()},
    }

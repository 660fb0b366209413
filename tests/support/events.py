"""Check a message off the wire against the AsyncAPI document (the contract, not our models)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

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

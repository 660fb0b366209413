"""Every documented example conforms to its schema — parameters, request bodies, responses
(error examples included), headers and the schemas' own examples — in both bundled documents,
checked with jsonschema (draft 4, formats checked) on the schemas as codegen converts them for
the kit (docs/adr/0008-docs-that-work.md). No server."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker

from services.platform.runtime.app import spec_path
from tools.codegen.openapi import JSON_SCHEMA_DIALECT, json_schema

SERVICES = ("auth", "inventory", "sales", "financial", "logistics", "notification")
DOCUMENTS = {name: json.loads(spec_path(name).read_bytes()) for name in SERVICES}
SCHEMA_MAPS = ("properties", "patternProperties")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
# jsonschema checks `date-time` only with an optional package the lock does not hold.
FORMATS = FormatChecker()
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # a type's business, not the format's
    if RFC3339.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


FORMATS.checks("date-time")(_date_time)


def _schema_examples(schema: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
    """(where, schema, example) for a schema and every schema nested in it that has one."""
    if not isinstance(schema, dict):
        return
    if "example" in schema:
        yield where, schema, schema["example"]
    for key in SCHEMA_MAPS:
        for name, sub in schema.get(key, {}).items():
            yield from _schema_examples(sub, f"{where}.{key}.{name}")
    for key in SCHEMA_LISTS:
        for i, sub in enumerate(schema.get(key, [])):
            yield from _schema_examples(sub, f"{where}.{key}[{i}]")
    for key in ("items", "additionalProperties", "not"):
        yield from _schema_examples(schema.get(key), f"{where}.{key}")


def _object_examples(node: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
    """(where, schema, example) for every parameter, media type and header object (anything
    with a `schema`) that gives an `example` or `examples`."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _object_examples(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    if "schema" in node:
        if "example" in node:
            yield where, node["schema"], node["example"]
        for name, named in node.get("examples", {}).items():
            yield f"{where}.examples.{name}", node["schema"], named["value"]
    for key, value in node.items():
        if key not in ("schema", "example", "examples"):
            yield from _object_examples(value, f"{where}.{key}")


def documented_examples(document: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    found = list(_object_examples(document.get("paths", {}), "paths"))
    components = document.get("components", {})
    for kind in ("parameters", "responses", "requestBodies", "headers"):
        found += _object_examples(components.get(kind, {}), f"components.{kind}")
    for name, schema in components.get("schemas", {}).items():
        found += _schema_examples(schema, f"components.schemas.{name}")
    return found


def violations(document: dict[str, Any], schema: Any, example: Any) -> list[str]:
    definitions = {
        name: json_schema(component, name)
        for name, component in document.get("components", {}).get("schemas", {}).items()
    }
    resolved = {"$schema": JSON_SCHEMA_DIALECT, "definitions": definitions}
    resolved.update(json_schema(schema, "example"))
    validator = Draft4Validator(resolved, format_checker=FORMATS)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(example)
    ]


def _cases() -> list[Any]:
    return [
        pytest.param(service, where, schema, example, id=f"{service}:{where}")
        for service in SERVICES
        for where, schema, example in documented_examples(DOCUMENTS[service])
    ]


@pytest.mark.parametrize(("service", "where", "schema", "example"), _cases())
def test_each_documented_example_conforms_to_its_schema(
    service: str, where: str, schema: Any, example: Any
) -> None:
    assert violations(DOCUMENTS[service], schema, example) == []


@pytest.mark.parametrize("service", SERVICES)
def test_the_walk_finds_every_kind_of_example(service: str) -> None:
    document = DOCUMENTS[service]
    places = [where for where, _, _ in documented_examples(document)]
    # A document whose operations take no request body has no body example to show.
    takes_bodies = any(
        "requestBody" in operation
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
    )
    kinds = [
        ".parameters[",  # path parameters
        ".responses.200.content.application/json",
        ".responses.401.content.application/problem+json",  # error examples
        "components.schemas.",
    ]
    if takes_bodies:
        kinds.append(".requestBody.content.application/json")
    for kind in kinds:
        assert any(kind in where for where in places), kind


def test_a_broken_example_is_found() -> None:
    """The check can fail: a response example with a wrong type, a wrong format and a
    missing field."""
    document = copy.deepcopy(DOCUMENTS["auth"])
    me = document["paths"]["/api/v1/auth/me"]["get"]["responses"]["200"]["content"]
    example = me["application/json"]["example"]
    example["version"] = "2"
    example["created_at"] = "2025-01-15 12:00"
    del example["email"]
    [(_, schema, broken)] = [
        found
        for found in documented_examples(document)
        if found[0] == "paths./api/v1/auth/me.get.responses.200.content.application/json"
    ]
    assert sorted(violations(document, schema, broken)) == [
        ": 'email' is a required property",
        "created_at: '2025-01-15 12:00' is not a 'date-time'",
        "version: '2' is not of type 'integer'",
    ]

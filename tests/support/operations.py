"""The operations of the services as the generated `OPERATIONS` describe them, called the way
a client would call them: a value of the right kind in every path parameter and the spec's own
example body — for probes that cover every operation, including the ones added later."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from services.platform.core.contracts import IDEMPOTENCY_KEY_HEADER, OperationInfo
from services.platform.runtime.app import spec_path
from services.platform.runtime.service import ServiceDefinition
from services.registry import SERVICES, load_definition
from tests.support.http import Api

METHODS = frozenset({"get", "put", "post", "delete", "patch"})


def all_operations() -> Iterator[tuple[str, OperationInfo]]:
    """(service, operation) of every operation of every service of `services.registry`."""
    for service in SERVICES:
        for operation in load_definition(service).operations.values():
            yield service, operation


def operation_of(service: str, operation_id: str) -> OperationInfo:
    return load_definition(service).operations[operation_id]


@cache
def example_bodies(service: str) -> Mapping[tuple[str, str], Any]:
    """The request body example of each (METHOD, path template) of the service's spec."""
    document = json.loads(spec_path(service).read_text())
    examples: dict[tuple[str, str], Any] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:  # a path item also holds `parameters`, `summary`
                continue
            content = operation.get("requestBody", {}).get("content", {})
            if "example" in content.get("application/json", {}):
                examples[(method.upper(), path)] = content["application/json"]["example"]
    return examples


def example_body(service: str, operation: OperationInfo) -> Any:
    """The spec's example body of the operation (None when it takes none)."""
    return example_bodies(service).get((operation.method, operation.path))


def schema_of(definition: ServiceDefinition, schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema itself, or the definition its `$ref` names."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return schema_of(definition, definition.schemas["definitions"][ref.split("/")[-1]])
    return schema


def path_value(definition: ServiceDefinition, schema: Mapping[str, Any]) -> str:
    """A value a client could send for a path parameter of this schema."""
    resolved = schema_of(definition, schema)
    if resolved.get("format") == "uuid":
        return str(uuid.uuid4())
    if resolved.get("type") == "integer":
        return "1"
    raise AssertionError(f"no value for a path parameter of schema {schema}: teach path_value")


def concrete_path(service: str, operation: OperationInfo) -> str:
    """The operation's path with a fresh value in each parameter."""
    definition = load_definition(service)
    path = operation.path
    for parameter in operation.parameters:
        if parameter.location == "path":
            value = path_value(definition, parameter.schema)
            path = path.replace(f"{{{parameter.wire_name}}}", value)
    return path


def call(api: Api, service: str, operation: OperationInfo, **options: Any) -> Any:
    """The operation called as a client would, with the spec's example body unless `options`
    hold another (`json=`, `content=`), a fresh Idempotency-Key where the operation requires
    one, and with its credentials (`token=`, `api_key=`)."""
    body = example_body(service, operation)
    if body is not None and "json" not in options and "content" not in options:
        options["json"] = body
    if any(p.required and p.wire_name == IDEMPOTENCY_KEY_HEADER for p in operation.parameters):
        options["headers"] = {
            IDEMPOTENCY_KEY_HEADER: str(uuid.uuid4()),
            **options.get("headers", {}),
        }
    return api(operation.method, concrete_path(service, operation), **options)

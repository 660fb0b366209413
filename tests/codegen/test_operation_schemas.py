"""The generated OPERATIONS tables of both services against their bundled specs: every schema is
valid draft 4, compiles with the kit's validator (jsonschema-rs), and accepts every example the
spec gives (request bodies, responses, parameters); the models parse the body and success
examples."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from services.platform.core.contracts import KIT_OPERATIONS, OperationInfo
from services.platform.http.validation import CompiledSchema
from tools.codegen import REPO_ROOT
from tools.codegen.openapi import HTTP_METHODS, deref, json_schema
from tools.codegen.runner import GENERATED_DIR, openapi_services

SERVICES = openapi_services(REPO_ROOT)


def _spec(service: str) -> Any:
    return json.loads((REPO_ROOT / GENERATED_DIR / "specs" / f"{service}.openapi.json").read_text())


def _operations(service: str) -> ModuleType:
    return importlib.import_module(f"generated.{service}.operations")


class Invalid(Exception):  # noqa: N818 - reads as the verdict
    """The instance breaks the schema (the kit's field errors in args[0])."""


def _compile(operations: ModuleType, schema: Any) -> Any:
    full = {"definitions": operations.SCHEMAS["definitions"], **schema}
    jsonschema.Draft4Validator.check_schema(full)
    compiled = CompiledSchema(schema, operations.SCHEMAS["definitions"])

    def validate(instance: Any) -> None:
        errors = compiled.errors(instance, "")
        if errors:
            raise Invalid(errors)

    return validate


def _examples(document: Any, media: Any) -> Iterator[Any]:
    if "example" in media:
        yield media["example"]
    for example in (media.get("examples") or {}).values():
        yield deref(document, example, "examples")["value"]


def _spec_operations(document: Any) -> Iterator[tuple[str, str, Any, Any]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation, item.get("parameters") or []


@pytest.mark.parametrize("service", SERVICES)
def test_schemas_are_draft_4(service: str) -> None:
    operations = _operations(service)
    jsonschema.Draft4Validator.check_schema(operations.SCHEMAS)
    assert operations.SCHEMAS["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert "Problem" in operations.SCHEMAS["definitions"]
    CompiledSchema(operations.SCHEMAS)


@pytest.mark.parametrize("service", SERVICES)
def test_every_example_validates_against_the_generated_schemas(service: str) -> None:
    document = _spec(service)
    operations = _operations(service)
    table: dict[str, OperationInfo] = dict(operations.OPERATIONS)
    checked = 0
    for path, method, spec, shared in _spec_operations(document):
        info = table[spec["operationId"]]
        assert (info.method, info.path) == (method.upper(), path)
        where = f"{service} {method.upper()} {path}"

        parameters = {p.wire_name: p for p in info.parameters}
        for raw in [*shared, *(spec.get("parameters") or [])]:
            parameter = deref(document, raw, where)
            if "example" in parameter:
                validate = _compile(operations, parameters[parameter["name"]].schema)
                validate(parameter["example"])
                checked += 1

        body = deref(document, spec["requestBody"], where) if "requestBody" in spec else None
        if body is not None:
            assert info.body is not None, where
            validate = _compile(operations, info.body.schema)
            for example in _examples(document, body["content"]["application/json"]):
                validate(example)
                info.body.model.model_validate(example)
                checked += 1

        success = info.success
        assert success is not None, where
        for status, raw in spec["responses"].items():
            response = deref(document, raw, where)
            for content_type, media in (response.get("content") or {}).items():
                if str(status) == str(success.status):
                    assert content_type == success.content_type, where
                    assert success.schema is not None
                    schema = success.schema
                else:  # error responses: their schemas are in SCHEMAS too
                    schema = json_schema(media["schema"], where)
                validate = _compile(operations, schema)
                for example in _examples(document, media):
                    validate(example)
                    if str(status) == str(success.status) and success.model is not None:
                        success.model.model_validate(example)
                    checked += 1
    # Proof that the walk found the examples: at least three per operation (success, 400, 401).
    assert checked >= 3 * len(table), (checked, len(table))


@pytest.mark.parametrize("service", SERVICES)
def test_the_table_describes_bodies_successes_and_locations(service: str) -> None:
    operations = _operations(service)
    for info in operations.OPERATIONS.values():
        assert all(p.location in ("path", "query", "header") for p in info.parameters)
        assert all(p.wire_name for p in info.parameters)
        success = info.success
        assert success is not None
        assert 200 <= success.status < 300
        if success.status == 204:
            assert (success.model, success.schema, success.content_type) == (None, None, None)
        if info.location is not None:
            assert success.status == 201
            assert "Location" in success.headers
            assert info.location.endswith("/{id}")
            assert success.model is not None
            assert "id" in success.model.model_fields
    metrics = operations.OPERATIONS["get_metrics"].success
    assert metrics is not None
    assert (metrics.content_type, metrics.model) == ("text/plain", None)
    assert set(operations.OPERATIONS) >= KIT_OPERATIONS


def test_create_product_in_full() -> None:
    from generated.inventory import models
    from generated.inventory.operations import OPERATIONS

    create = OPERATIONS["create_product"]
    assert [(p.name, p.wire_name, p.location) for p in create.parameters] == [
        ("idempotency_key", "Idempotency-Key", "header")
    ]
    assert create.idempotent
    assert create.writes
    assert create.body is not None
    assert create.body.required is True
    assert create.body.schema == {"$ref": "#/definitions/ProductCreate"}
    assert create.body.model is models.ProductCreate
    assert create.success is not None
    assert create.success.status == 201
    assert create.success.model is models.Product
    assert create.success.headers == ("Location", "ETag")
    assert create.location == "/api/v1/products/{id}"
    per_page = {p.wire_name: p for p in OPERATIONS["list_products"].parameters}["per_page"]
    assert per_page.schema["default"] == 15


def test_the_schemas_reject_what_the_spec_forbids() -> None:
    from generated.inventory import operations

    def validator(name: str) -> Any:
        return _compile(operations, {"$ref": f"#/definitions/{name}"})

    create = validator("ProductCreate")
    with pytest.raises(Invalid):
        create({"name": "Keyboard", "price": "1.00"})  # no sku
    with pytest.raises(Invalid):
        create({"sku": "KB-1", "name": "Keyboard", "price": "1.00", "extra": 1})
    with pytest.raises(Invalid):
        create({"sku": "KB-1", "name": "Key\x00board", "price": "1.00"})  # NUL (house rule)
    create({"sku": "KB-1", "name": "Keyboard", "price": "1.00", "description": None})
    release = validator("ReleaseReason")  # a nullable enum
    release(None)
    release("expired")
    with pytest.raises(Invalid):
        release("lost")
    validator("WarehouseCreate")({"code": "SP-02", "name": "Cross-dock", "address": None})

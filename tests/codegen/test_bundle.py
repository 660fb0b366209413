"""The OpenAPI bundler of tools/codegen: external refs hoisted or inlined, nothing lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.codegen.bundle import NO_NUL, BundleError, bundle_openapi, load_yaml, pointer_tokens

COMMON: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "common", "version": "1.0.0"},
    "tags": [{"name": "operations", "description": "Health and metrics."}],
    "paths": {
        "/health": {
            "get": {
                "operationId": "get_health",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}
                        },
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                },
            }
        }
    },
    "components": {
        "schemas": {
            "Problem": {
                "type": "object",
                "properties": {
                    "errors": {"type": "array", "items": {"$ref": "#/components/schemas/Field"}}
                },
            },
            "Field": {"type": "object", "properties": {"field": {"type": "string"}}},
            "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
            "Unused": {"type": "string"},
        },
        "responses": {
            "BadRequest": {
                "description": "bad",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        },
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
    },
}


def _service(**components: Any) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "svc", "version": "1.0.0"},
        "tags": [{"name": "things"}],
        "paths": {
            "/health": {"$ref": "common.yaml#/paths/~1health"},
            "/api/v1/things": {
                "get": {
                    "operationId": "list_things",
                    "tags": ["things"],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Thing"}
                                }
                            },
                        },
                        "400": {"$ref": "common.yaml#/components/responses/BadRequest"},
                    },
                }
            },
        },
        "components": {
            "schemas": {"Thing": {"type": "object"}},
            "securitySchemes": {
                "bearerAuth": {"$ref": "common.yaml#/components/securitySchemes/bearerAuth"}
            },
            **components,
        },
    }


def _write(directory: Path, service: dict[str, Any], common: dict[str, Any] = COMMON) -> Path:
    (directory / "common.yaml").write_text(yaml.safe_dump(common))
    path = directory / "svc.yaml"
    path.write_text(yaml.safe_dump(service, sort_keys=False))
    return path


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_external_components_are_hoisted_with_their_dependencies(tmp_path: Path) -> None:
    bundled = bundle_openapi(_write(tmp_path, _service()))
    components = bundled["components"]
    assert set(components["schemas"]) == {"Thing", "Problem", "Field", "Health"}  # not Unused
    assert components["responses"]["BadRequest"]["content"]["application/problem+json"] == {
        "schema": {"$ref": "#/components/schemas/Problem"}
    }
    assert all(ref.startswith("#/components/") for ref in _refs(bundled))


def test_path_items_are_inlined_and_their_tags_declared(tmp_path: Path) -> None:
    bundled = bundle_openapi(_write(tmp_path, _service()))
    health = bundled["paths"]["/health"]["get"]
    assert health["operationId"] == "get_health"
    assert health["responses"]["400"] == {"$ref": "#/components/responses/BadRequest"}
    assert list(bundled["paths"]) == ["/health", "/api/v1/things"]  # document order kept
    assert bundled["tags"] == [
        {"name": "things"},
        {"name": "operations", "description": "Health and metrics."},
    ]


def test_a_same_named_alias_becomes_the_component(tmp_path: Path) -> None:
    bundled = bundle_openapi(_write(tmp_path, _service()))
    assert bundled["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }


def test_a_conflicting_component_is_an_error(tmp_path: Path) -> None:
    service = _service()
    service["components"]["schemas"]["Problem"] = {"type": "string"}
    with pytest.raises(BundleError, match="Problem"):
        bundle_openapi(_write(tmp_path, service))


def test_an_identical_component_is_accepted(tmp_path: Path) -> None:
    service = _service()
    service["components"]["schemas"]["Health"] = COMMON["components"]["schemas"]["Health"]
    bundled = bundle_openapi(_write(tmp_path, service))
    assert bundled["components"]["schemas"]["Health"] == {
        "type": "object",
        "properties": {"status": {"type": "string", "pattern": NO_NUL}},
    }


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("missing.yaml#/paths/~1health", "not found"),
        ("common.yaml#/paths/~1nothing", "does not resolve"),
        ("common.yaml#/components/schemas/Nothing", "does not resolve"),
    ],
)
def test_unresolvable_references_are_errors(tmp_path: Path, ref: str, message: str) -> None:
    service = _service()
    service["paths"]["/health"] = {"$ref": ref}
    with pytest.raises(BundleError, match=message):
        bundle_openapi(_write(tmp_path, service))


def test_bundling_is_deterministic(tmp_path: Path) -> None:
    path = _write(tmp_path, _service())
    assert bundle_openapi(path) == bundle_openapi(path)


def test_pointer_tokens_unescape() -> None:
    assert pointer_tokens("/paths/~1health~1live/get") == ["paths", "/health/live", "get"]
    assert pointer_tokens("/a~0b") == ["a~b"]
    assert pointer_tokens("") == []


def test_free_text_strings_refuse_nul_in_the_published_document(tmp_path: Path) -> None:
    service = _service()
    service["components"]["schemas"]["Thing"] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 10},
            "id": {"type": "string", "format": "uuid"},
            "code": {"type": "string", "pattern": "^[A-Z]+$"},
            "status": {"type": "string", "enum": ["on", "off"]},
        },
    }

    bundled = bundle_openapi(_write(tmp_path, service))

    properties = bundled["components"]["schemas"]["Thing"]["properties"]
    assert properties["name"]["pattern"] == NO_NUL
    assert "pattern" not in properties["id"]
    assert properties["code"]["pattern"] == "^[A-Z]+$"
    assert "pattern" not in properties["status"]


def test_a_key_said_twice_in_one_mapping_is_an_error(tmp_path: Path) -> None:
    spec = tmp_path / "erp.yaml"
    spec.write_text(
        "bindings:\n- exchange: inventory.events\n  routing-key: a\n  routing-key: b\n",
        encoding="utf-8",
    )
    with pytest.raises(BundleError, match=r"erp.yaml:4: the key 'routing-key' appears twice"):
        load_yaml(spec)
    spec.write_text("a: 1\nb: {a: 2}\n", encoding="utf-8")  # one key per mapping is fine
    assert load_yaml(spec) == {"a": 1, "b": {"a": 2}}

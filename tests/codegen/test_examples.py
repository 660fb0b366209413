"""The bundled document's error examples name the operation they document."""

from __future__ import annotations

from typing import Any

import pytest

from tools.codegen.common import CodegenError
from tools.codegen.examples import place_error_examples

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _document(path_example: str | None = "0b9f4a52-3c1e-4f7a-9d2b-000000000001") -> Any:
    thing_id: dict[str, Any] = {"name": "thing_id", "in": "path", "required": True}
    if path_example is not None:
        thing_id["example"] = path_example

    def problem(status: int) -> dict[str, Any]:
        example = {"status": status, "detail": "x", "instance": "/somewhere/else"}
        return {"content": {"application/problem+json": {"schema": PROBLEM, "example": example}}}

    return {
        "paths": {
            "/api/v1/things/{thing_id}": {
                "parameters": [{"$ref": "#/components/parameters/ThingId"}],
                "delete": {
                    "x-permissions": ["things.delete", "things.view"],
                    "responses": {
                        "204": {"description": "gone"},
                        "400": {"$ref": "#/components/responses/BadRequest"},
                        "403": {"$ref": "#/components/responses/Forbidden"},
                        "429": {"$ref": "#/components/responses/Plain"},
                    },
                },
            }
        },
        "components": {
            "parameters": {"ThingId": thing_id},
            "responses": {
                "BadRequest": problem(400),
                "Forbidden": problem(403),
                "Plain": {"description": "no example"},
            },
        },
    }


def test_each_operation_gets_its_own_instance_and_permissions() -> None:
    document = place_error_examples(_document(), "t.yaml")
    responses = document["paths"]["/api/v1/things/{thing_id}"]["delete"]["responses"]
    bad = responses["400"]["content"]["application/problem+json"]["example"]
    forbidden = responses["403"]["content"]["application/problem+json"]["example"]
    assert bad["instance"] == "/api/v1/things/0b9f4a52-3c1e-4f7a-9d2b-000000000001"
    assert bad["detail"] == "x"
    assert forbidden["detail"] == "Missing permission: things.delete, things.view"
    assert responses["429"] == {"$ref": "#/components/responses/Plain"}  # nothing to place
    shared = document["components"]["responses"]["BadRequest"]
    assert shared["content"]["application/problem+json"]["example"]["instance"] == "/somewhere/else"


def test_a_path_parameter_without_an_example_is_refused() -> None:
    with pytest.raises(CodegenError, match="path parameter 'thing_id' has no example"):
        place_error_examples(_document(path_example=None), "t.yaml")

"""Requests parsed and checked as the operation declares, every problem reported at once."""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field

from services.platform.core.contracts import BodyInfo, OperationInfo, ParameterInfo
from services.platform.core.problems import Problem
from services.platform.http.requests import RequestParser

DEFINITIONS = {
    "ThingCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "count"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 10},
            "count": {"type": "integer", "format": "int32", "minimum": 0},
            "owner_id": {"type": ["string", "null"], "format": "uuid"},
        },
    }
}


class ThingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=10)
    count: int
    owner_id: UUID | None = None


OPERATION = OperationInfo(
    operation_id="create_thing",
    method="POST",
    path="/things/{thing_id}",
    permissions=(),
    public=True,
    parameters=(
        ParameterInfo("thing_id", "path", True, "thing_id", {"type": "string", "format": "uuid"}),
        ParameterInfo(
            "page", "query", False, "page", {"type": "integer", "minimum": 1, "default": 1}
        ),
        ParameterInfo("active", "query", False, "active", {"type": "boolean"}),
        ParameterInfo(
            "idempotency_key",
            "header",
            False,
            "Idempotency-Key",
            {"type": "string", "minLength": 1, "maxLength": 255},
        ),
        ParameterInfo("if_match", "header", False, "If-Match", {"type": "string"}),
    ),
    body=BodyInfo(True, {"$ref": "#/definitions/ThingCreate"}, ThingCreate),
)
PARSER = RequestParser(OPERATION, DEFINITIONS)
THING = "0b3f2f5e-8e4b-4a8e-9d3c-1c2b3a4d5e6f"


def errors_of(problem: pytest.ExceptionInfo[Problem]) -> dict[str, str]:
    assert problem.value.status == 400
    return {error["field"]: error["message"] for error in problem.value.errors}


def test_parameters_are_coerced_converted_and_defaulted() -> None:
    arguments, key = PARSER.parameters(
        b"active=true", {"thing_id": THING}, {"idempotency-key": "k-1", "if-match": '"3"'}
    )
    assert arguments == {"thing_id": UUID(THING), "page": 1, "active": True, "if_match": '"3"'}
    assert key == "k-1"  # the kit's, not the handler's


def test_every_bad_parameter_is_reported_once() -> None:
    with pytest.raises(Problem) as problem:
        PARSER.parameters(b"page=0&active=maybe&color=red", {"thing_id": "nope"}, {})
    assert errors_of(problem) == {
        "color": "is not a parameter of this operation",
        "thing_id": "must be a UUID",
        "page": "must be at least 1",
        "active": "must be a boolean",
    }


def test_the_body_becomes_the_request_model() -> None:
    model, data = PARSER.body(b'{"name": "lamp", "count": 2}', "application/json; charset=utf-8")
    assert model == ThingCreate(name="lamp", count=2)
    assert data == {"name": "lamp", "count": 2}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", {"body": "The request body is required."}),
        (b"\xff", {"body": "The body is not valid UTF-8 text."}),
        (b'{"name": NaN}', {"body": "The body is not valid JSON: NaN is not valid JSON"}),
        (b"[1, 2]", {"body": "must be an object"}),
    ],
)
def test_bad_bodies_are_400(raw: bytes, expected: dict[str, str]) -> None:
    with pytest.raises(Problem) as problem:
        PARSER.body(raw, "application/json")
    assert errors_of(problem) == expected


def test_every_field_problem_is_listed_once() -> None:
    body = {"count": 2**31, "owner_id": "x", "extra": 1}
    with pytest.raises(Problem) as problem:
        PARSER.body(json.dumps(body).encode(), None)
    assert errors_of(problem) == {
        "name": "is required",
        "extra": "is not allowed",
        "count": "must be between -2147483648 and 2147483647 (int32)",
        "owner_id": "must be a UUID",
    }


def test_each_missing_required_field_is_listed_once() -> None:
    # jsonschema reports `required` once per missing name, each error naming the whole list.
    with pytest.raises(Problem) as problem:
        PARSER.body(b"{}", None)
    assert problem.value.errors == [
        {"field": "name", "message": "is required"},
        {"field": "count", "message": "is required"},
    ]


def test_a_body_that_is_not_json_is_415() -> None:
    with pytest.raises(Problem) as problem:
        PARSER.body(b"name=lamp", "application/x-www-form-urlencoded")
    assert problem.value.status == 415

"""The kit's validation messages: each invalid field once, the rule it breaks with its limit,
and never the submitted value (it may be a password or a token)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any, cast

import jsonschema
import pytest
from pydantic import BaseModel, Field

from services.platform.core.contracts import BodyInfo, OperationInfo
from services.platform.core.problems import MAX_FIELD_ERRORS, Problem, validation_problem
from services.platform.http.requests import RequestParser
from services.platform.http.validation import (
    MAX_EXPLAINED_ERRORS,
    CompiledSchema,
    _has_lone_surrogate,
    each_field_once,
    parse_json,
    schema_errors,
)

SECRET = "hunter2-Sup3r-s3cret"

SIGN_UP = CompiledSchema(
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "email", "password"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 20},
            "email": {"type": "string", "format": "email", "minLength": 3, "maxLength": 254},
            "password": {"type": "string", "format": "password", "minLength": 8, "maxLength": 64},
            "roles": {
                "type": "array",
                "uniqueItems": True,
                "maxItems": 2,
                "items": {"enum": ["a"]},
            },
            "quantity": {"type": "integer", "minimum": 1, "maximum": 10, "not": {"enum": [5]}},
            "price": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        },
    }
)


def messages(instance: Any) -> dict[str, str]:
    found = SIGN_UP.errors(instance, "")
    fields = [error["field"] for error in found]
    assert len(fields) == len(set(fields)), f"a field listed twice: {found}"
    return {error["field"]: error["message"] for error in found}


def test_three_missing_fields_are_three_errors() -> None:
    assert SIGN_UP.errors({}, "") == [
        {"field": "name", "message": "is required"},
        {"field": "email", "message": "is required"},
        {"field": "password", "message": "is required"},
    ]


def test_a_field_that_breaks_two_rules_is_listed_once_with_both() -> None:
    found = messages({"name": "x", "email": "x", "password": "p" * 8})
    assert found == {"email": "must be an e-mail address; must be at least 3 characters long"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": ""}, {"name": "must not be empty"}),
        ({"name": "n" * 21}, {"name": "must be at most 20 characters long"}),
        ({"password": "short"}, {"password": "must be at least 8 characters long"}),
        ({"password": SECRET * 5}, {"password": "must be at most 64 characters long"}),
        ({"password": 12345678}, {"password": "must be a string"}),
        ({"roles": ["a", "a"]}, {"roles": "must not repeat an item"}),
        (
            {"roles": ["a", "a", "a"]},
            {"roles": "must not repeat an item; must have at most 2 items"},
        ),
        ({"roles": ["b"]}, {"roles.0": 'must be one of "a"'}),
        ({"quantity": 0}, {"quantity": "must be at least 1"}),
        ({"quantity": 11}, {"quantity": "must be at most 10"}),
        ({"quantity": 5}, {"quantity": "must not be 5"}),
        ({"price": 0}, {"price": "must be greater than 0"}),
        ({"surprise": SECRET}, {"surprise": "is not allowed"}),
    ],
)
def test_each_message_names_the_rule_and_its_limit(
    body: dict[str, Any], expected: dict[str, str]
) -> None:
    valid = {"name": "Maria", "email": "maria@example.com", "password": "S3cure-passw0rd"}
    assert messages({**valid, **body}) == expected


@pytest.mark.parametrize(
    "password",
    [SECRET * 10, SECRET[:3], [SECRET], {"value": SECRET}, None],
    ids=["too-long", "too-short", "array", "object", "null"],
)
def test_no_message_echoes_a_submitted_password(password: object) -> None:
    found = SIGN_UP.errors({"name": SECRET, "email": SECRET, "password": password}, "")
    assert found
    for error in found:
        assert SECRET[:3] not in error["message"], error


def test_when_the_validators_disagree_the_fallback_names_the_place_not_the_value() -> None:
    # jsonschema-rs checks `ipv4`; the explainer does not know it, so finds nothing to list.
    address = CompiledSchema({"type": "object", "properties": {"ip": {"format": "ipv4"}}})
    assert address.errors({"ip": SECRET}, "") == [{"field": "ip", "message": "is not valid"}]


def test_a_number_out_of_range_is_refused_without_echoing_it() -> None:
    with pytest.raises(Problem) as refused:
        parse_json(b'{"password": 1e999123}')
    assert refused.value.detail == "The body is not valid JSON: a number is out of range"
    assert refused.value.errors == [
        {"field": "body", "message": "The body is not valid JSON: a number is out of range"}
    ]


def test_problems_are_grouped_one_per_field_in_first_seen_order() -> None:
    pairs = [("a", "x"), ("b", "y"), ("a", "z"), ("a", "x")]
    assert each_field_once(pairs) == [
        {"field": "a", "message": "x; z"},
        {"field": "b", "message": "y"},
    ]


class StrictLogin(BaseModel):
    password: str = Field(max_length=10)


LOOSE_LOGIN = OperationInfo(
    operation_id="login",
    method="POST",
    path="/login",
    permissions=(),
    public=True,
    parameters=(),
    body=BodyInfo(True, {"type": "object"}, StrictLogin),
)


def test_when_only_the_model_refuses_the_body_the_secret_is_not_echoed_either() -> None:
    parser = RequestParser(LOOSE_LOGIN, {})
    with pytest.raises(Problem) as refused:
        parser.body(json.dumps({"password": SECRET}).encode(), None)
    assert refused.value.errors == [
        {"field": "password", "message": "String should have at most 10 characters"}
    ]


class EndlessViolations:
    """A validator whose instance breaks the schema without end: explaining must stop."""

    drawn = 0

    def iter_errors(self, instance: object) -> Iterator[jsonschema.ValidationError]:
        for index in itertools.count():
            self.drawn += 1
            if self.drawn > 10 * MAX_FIELD_ERRORS:
                raise AssertionError("every violation is being explained")
            yield jsonschema.ValidationError(
                "1 is not of type 'string'",
                validator="type",
                validator_value="string",
                instance=1,
                path=[index],
                schema={"type": "string"},
            )


def test_only_the_violations_a_problem_can_list_are_explained() -> None:
    validator = EndlessViolations()
    found = schema_errors(cast(jsonschema.protocols.Validator, validator), [], "permissions")
    assert len(found) == MAX_EXPLAINED_ERRORS
    assert validation_problem(found).errors == found[:MAX_FIELD_ERRORS]
    assert found[0] == {"field": "permissions.0", "message": "must be a string"}


def test_a_huge_array_of_wrong_items_is_refused_with_a_bounded_list() -> None:
    schema = CompiledSchema({"type": "array", "items": {"type": "string"}})
    found = schema.errors([1] * 200_000, "permissions")
    assert len(found) == MAX_EXPLAINED_ERRORS
    assert len(schema.violations([1] * 200_000)) == MAX_EXPLAINED_ERRORS


def test_a_lone_surrogate_deep_down_is_found_without_recursion() -> None:
    depth = 5_000  # deeper than the interpreter's recursion limit
    nested: Any = "\ud800"
    for _ in range(depth):
        nested = [nested]
    assert _has_lone_surrogate(nested)
    nested = "\u00e9"
    for _ in range(depth):
        nested = {"a": nested}
    assert not _has_lone_surrogate(nested)


@pytest.mark.parametrize(
    ("moment", "valid"),
    [
        ("9999-12-31T23:59:59-01:00", False),  # year 10000 in UTC
        ("0001-01-01T00:30:00+01:00", False),  # year 0 in UTC
        ("9999-12-31T23:59:59Z", True),
        ("2026-12-02T10:00:60Z", True),  # a leap second
    ],
)
def test_a_date_time_no_datetime_can_hold_is_refused(moment: str, valid: bool) -> None:
    schema = CompiledSchema({"type": "string", "format": "date-time"})
    found = schema.errors(moment, "expires_at")
    if valid:
        assert found == []
    else:
        assert found == [
            {
                "field": "expires_at",
                "message": (
                    "must be an RFC 3339 date-time with a time zone, within years 1-9999 in UTC"
                ),
            }
        ]

"""Regression probes of bad input over HTTP (issue 7): every refusal is an RFC 9457 problem
that lists each invalid field once, names the rule it breaks, and never echoes a submitted
secret; no response builds a URL from the client's Host header."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.accounts import PASSWORD
from tests.support.http import Api, new_ip, unique_email
from tests.support.problems import problem
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

SECRET = "Hunter2-Sup3r-s3cret-"
FORGED_HOST = "evil.example"


@pytest.fixture
def api(auth_server: ServerThread) -> Iterator[Api]:
    with Api(auth_server.url, ip=new_ip()) as client:
        yield client


def fields(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


def test_each_missing_required_field_is_reported_once(api: Api) -> None:
    body = problem(api.post("/api/v1/auth/register", json={}), 400)
    assert body["errors"] == [
        {"field": "name", "message": "is required"},
        {"field": "email", "message": "is required"},
        {"field": "password", "message": "is required"},
    ]
    assert body["detail"] == "The request has 3 invalid fields; see errors."


def test_a_field_breaking_two_rules_counts_once_and_each_message_states_its_limit(
    api: Api,
) -> None:
    bad = {"name": "", "email": "x", "password": "short"}
    body = problem(api.post("/api/v1/auth/register", json=bad), 400)
    assert sorted(fields(body)) == ["email", "name", "password"]
    assert body["detail"] == "The request has 3 invalid fields; see errors."
    messages = {error["field"]: error["message"] for error in body["errors"]}
    assert messages == {
        "name": "must not be empty",
        "email": "must be an e-mail address; must be at least 3 characters long",
        "password": "must be at least 8 characters long",
    }


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (SECRET * 10, "must be at most 128 characters long"),
        ([SECRET], "must be a string"),
        ({"value": SECRET}, "must be a string"),
    ],
    ids=["too-long", "array", "object"],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/auth/register", {"name": "Probe", "email": "probe@example.com"}),
        ("POST", "/api/v1/auth/login", {"email": "probe@example.com"}),
        ("POST", "/api/v1/auth/reset-password", {"token": "t" * 20}),
        ("POST", "/api/v1/users", {"name": "Probe", "email": "probe@example.com"}),
        # The body is checked before the user is looked up: any id will do.
        ("PATCH", f"/api/v1/users/{uuid.uuid4()}", {}),
    ],
    ids=["register", "login", "reset-password", "create-user", "update-user"],
)
def test_no_refusal_echoes_a_submitted_password(
    api: Api,
    admin_token: str,
    method: str,
    path: str,
    body: dict[str, Any],
    password: object,
    message: str,
) -> None:
    response = api(method, path, token=admin_token, json={**body, "password": password})
    refused = problem(response, 400)
    assert refused["errors"] == [{"field": "password", "message": message}]
    assert SECRET[:5] not in response.text


def test_a_password_breaking_the_policy_is_not_echoed(api: Api) -> None:
    weak = "Hunter-without-digits"  # well-formed for the schema; the policy wants a digit
    body = {"name": "Probe", "email": unique_email("policy"), "password": weak}
    response = api.post("/api/v1/auth/register", json=body)
    assert problem(response, 422)["errors"] == [
        {"field": "password", "message": "must contain a letter and a digit"}
    ]
    assert "without-digits" not in response.text


def test_an_overlong_token_is_not_echoed(api: Api) -> None:
    response = api.post("/api/v1/auth/refresh", json={"refresh_token": SECRET * 40})
    assert problem(response, 400)["errors"] == [
        {"field": "refresh_token", "message": "must be at most 512 characters long"}
    ]
    assert SECRET[:5] not in response.text


def test_a_trailing_slash_is_a_404_problem_without_a_redirect(api: Api) -> None:
    response = api.get("/api/v1/auth/me/", headers={"Host": FORGED_HOST})
    problem(response, 404)
    assert "location" not in response.headers


def test_the_one_redirect_swagger_ui_slash_is_relative_whatever_the_host(api: Api) -> None:
    response = api.get("/ui", headers={"Host": FORGED_HOST}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"


def test_the_location_of_a_created_resource_never_uses_the_host_header(
    api: Api, admin_token: str
) -> None:
    body = {"name": "Located", "email": unique_email("located"), "password": PASSWORD}
    response = api.post(
        "/api/v1/users", token=admin_token, json=body, headers={"Host": FORGED_HOST}
    )
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location == f"/api/v1/users/{response.json()['id']}"
    assert FORGED_HOST not in location


def test_an_unknown_parameter_is_named_without_echoing_a_huge_name(api: Api) -> None:
    name = "x" * 8_000
    response = api.get("/.well-known/jwks.json", params={name: "1", "sort": "1"})
    body = problem(response, 400)
    assert len(response.content) < 2_000, "the refusal echoes the whole name"
    assert sorted(fields(body)) == sorted([name[:64] + "…", "sort"])


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+01:00"])
def test_a_date_time_beyond_what_a_timestamp_holds_is_a_400(
    api: Api, admin_token: str, moment: str
) -> None:
    key = {"name": "far future", "permissions": ["auth.users.view"], "expires_at": moment}
    response = api.post("/api/v1/api-keys", json=key, token=admin_token)
    body = problem(response, 400)
    assert fields(body) == ["expires_at"]

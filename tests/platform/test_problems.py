"""problem+json rendering and the mapping of every kind of error to a problem."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from connexion.exceptions import (
    BadRequestProblem,
    NonConformingResponseBody,
    OAuthProblem,
    UnsupportedMediaTypeProblem,
)
from starlette.exceptions import HTTPException

from services.platform.core.problems import PROBLEM_JSON, Problem, unauthorized, validation_problem
from services.platform.http.errors import ProblemRenderer, problem_response
from services.platform.http.routes import RouteTable

SPEC: dict[str, Any] = {
    "paths": {
        "/api/v1/users": {"get": {}, "post": {}},
        "/api/v1/users/me": {"get": {}},
        "/api/v1/users/{user_id}": {"get": {}, "patch": {}, "delete": {}, "parameters": []},
    }
}


def body(problem: Problem, instance: str | None = "/x") -> dict[str, Any]:
    response = problem_response(problem, instance)
    assert response.content_type == PROBLEM_JSON
    return dict(json.loads(response.body))


def test_defaults_follow_rfc_9457() -> None:
    assert body(Problem(404), "/api/v1/users/1") == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": None,
        "instance": "/api/v1/users/1",
    }


def test_title_type_errors_and_headers_are_kept() -> None:
    problem = Problem(
        422,
        "Unprocessable Content",
        "Not enough stock.",
        type="https://erp.example/problems/stock",
        errors=[{"field": "items.0.quantity", "message": "only 2 left"}],
        headers={"Retry-After": "3"},
    )
    rendered = body(problem)
    assert rendered["type"] == "https://erp.example/problems/stock"
    assert rendered["title"] == "Unprocessable Content"
    assert rendered["errors"] == [{"field": "items.0.quantity", "message": "only 2 left"}]
    assert problem_response(problem, None).headers["Retry-After"] == "3"


def test_an_unknown_status_still_has_a_title() -> None:
    assert body(Problem(599))["title"] == "Error"


def test_401_always_carries_a_bearer_challenge() -> None:
    assert problem_response(Problem(401), "/x").headers["WWW-Authenticate"] == "Bearer"
    assert unauthorized("expired").headers == {"WWW-Authenticate": "Bearer"}


def test_validation_problem_summarises_its_errors() -> None:
    one = validation_problem([{"field": "email", "message": "is required"}])
    assert (one.status, one.detail) == (400, "email: is required")
    many = validation_problem([{"field": f"f{i}", "message": "bad"} for i in range(80)])
    assert many.detail == "The request has 50 invalid fields; see errors."
    assert len(many.errors) == 50


@pytest.fixture
def renderer() -> ProblemRenderer:
    return ProblemRenderer(RouteTable(SPEC))


def test_a_problem_passes_through(renderer: ProblemRenderer) -> None:
    problem = Problem(409, detail="duplicate")
    assert renderer.to_problem(problem, "/x", "POST") is problem


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (BadRequestProblem("bad"), 400, "bad"),
        (UnsupportedMediaTypeProblem("text/csv"), 415, "text/csv"),
        (OAuthProblem("No authorization token provided"), 401, "No authorization token provided"),
    ],
)
def test_connexion_problems_keep_status_and_detail(
    renderer: ProblemRenderer, error: Exception, status: int, detail: str
) -> None:
    problem = renderer.to_problem(error, "/x", "GET")
    assert (problem.status, problem.detail) == (status, detail)
    assert problem.type == "about:blank"


def test_405_allows_every_method_of_the_path(renderer: ProblemRenderer) -> None:
    starlette_405 = HTTPException(405, headers={"Allow": "GET"})  # one route's methods only
    problem = renderer.to_problem(starlette_405, "/api/v1/users/123", "PUT")
    assert problem.headers["Allow"] == "DELETE, GET, HEAD, PATCH"
    assert problem.status == 405


def test_405_prefers_the_literal_path_over_a_template(renderer: ProblemRenderer) -> None:
    problem = renderer.to_problem(HTTPException(405), "/api/v1/users/me", "POST")
    assert problem.headers["Allow"] == "GET, HEAD"


def test_404_of_an_unknown_route(renderer: ProblemRenderer) -> None:
    problem = renderer.to_problem(HTTPException(404), "/nowhere", "GET")
    assert (problem.status, problem.title) == (404, "Not Found")


def test_an_unexpected_error_is_a_500_that_leaks_nothing(
    renderer: ProblemRenderer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        problem = renderer.to_problem(ValueError("password=hunter2"), "/x", "GET")
    assert problem.status == 500
    assert "hunter2" not in json.dumps(body(problem))
    assert "hunter2" in caplog.text  # but the log has it, with the traceback


def test_a_response_outside_the_contract_is_a_500_without_schema_details(
    renderer: ProblemRenderer,
) -> None:
    error = NonConformingResponseBody("'id' is a required property; schema {...}")
    problem = renderer.to_problem(error, "/x", "GET")
    assert problem.status == 500
    assert "required property" not in (problem.detail or "")


def test_route_table_finds_templates() -> None:
    routes = RouteTable(SPEC)
    assert routes.template("GET", "/api/v1/users/me") == "/api/v1/users/me"
    assert routes.template("PATCH", "/api/v1/users/me") == "/api/v1/users/{user_id}"
    assert routes.template("HEAD", "/api/v1/users/42") == "/api/v1/users/{user_id}"
    assert routes.template("GET", "/api/v1/users/42/roles") is None
    assert routes.allowed_methods("/nowhere") == []

"""problem+json rendering (`http.responses.render_problem`) and the mapping of every kind of
error to a problem (`http.errors.to_problem` and the router's 404/405)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from services.platform.core.contracts import OperationInfo
from services.platform.core.problems import PROBLEM_JSON, Problem, unauthorized, validation_problem
from services.platform.http.errors import (
    INTERNAL_ERROR,
    contract_breach,
    method_not_allowed,
    not_found,
    to_problem,
)
from services.platform.http.responses import Rendered, render_problem
from services.platform.http.router import Router

PATHS: dict[str, tuple[str, ...]] = {
    "/api/v1/users": ("GET", "POST"),
    "/api/v1/users/me": ("GET",),
    "/api/v1/users/{user_id}": ("GET", "PATCH", "DELETE"),
}
ROUTER: Router[str] = Router(
    (OperationInfo(f"{method} {path}", method, path, (), True, ()), f"{method} {path}")
    for path, methods in PATHS.items()
    for method in methods
)


def rendered(problem: Problem, instance: str | None = "/x") -> Rendered:
    response = render_problem(problem, instance)
    assert response.headers["content-type"] == PROBLEM_JSON
    return response


def body(problem: Problem, instance: str | None = "/x") -> dict[str, Any]:
    return dict(json.loads(rendered(problem, instance).body))


def test_defaults_follow_rfc_9457() -> None:
    assert body(Problem(404), "/api/v1/users/1") == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": None,
        "instance": "/api/v1/users/1",
    }
    assert rendered(Problem(404)).status == 404


def test_title_type_errors_and_headers_are_kept() -> None:
    problem = Problem(
        422,
        "Unprocessable Content",
        "Not enough stock.",
        type="https://erp.example/problems/stock",
        errors=[{"field": "items.0.quantity", "message": "only 2 left"}],
        headers={"Retry-After": "3", "Content-Type": "text/plain"},
    )
    found = body(problem)
    assert found["type"] == "https://erp.example/problems/stock"
    assert found["title"] == "Unprocessable Content"
    assert found["errors"] == [{"field": "items.0.quantity", "message": "only 2 left"}]
    headers = rendered(problem, None).headers
    assert headers["Retry-After"] == "3"
    assert "Content-Type" not in headers  # a problem is always problem+json


def test_text_is_sent_as_utf_8_not_escaped() -> None:
    assert "Não há estoque".encode() in rendered(Problem(409, detail="Não há estoque")).body


def test_an_unknown_status_still_has_a_title() -> None:
    assert body(Problem(599))["title"] == "Error"


def test_401_always_carries_a_bearer_challenge() -> None:
    assert rendered(Problem(401)).headers["WWW-Authenticate"] == "Bearer"
    assert unauthorized("expired").headers == {"WWW-Authenticate": "Bearer"}
    challenge = 'ApiKey realm="erp"'
    own = rendered(Problem(401, headers={"www-authenticate": challenge})).headers
    assert own == {"www-authenticate": challenge, "content-type": PROBLEM_JSON}  # kept, not doubled


def test_validation_problem_summarises_its_errors() -> None:
    one = validation_problem([{"field": "email", "message": "is required"}])
    assert (one.status, one.detail) == (400, "email: is required")
    many = validation_problem([{"field": f"f{i}", "message": "bad"} for i in range(80)])
    assert many.detail == "The request has 50 invalid fields; see errors."
    assert len(many.errors) == 50


def test_a_problem_passes_through() -> None:
    problem = Problem(409, detail="duplicate")
    assert to_problem(problem, "POST", "/x") is problem


def test_a_405_allows_every_method_of_the_path() -> None:
    found = ROUTER.match("PUT", "/api/v1/users/123")
    assert found is not None
    assert found.target is None
    problem = method_not_allowed("PUT", found.route.allow)
    assert problem.status == 405
    assert problem.headers["Allow"] == "DELETE, GET, HEAD, PATCH"
    assert problem.detail == "PUT is not allowed here; allowed: DELETE, GET, HEAD, PATCH."


def test_a_405_prefers_the_literal_path_over_a_template() -> None:
    found = ROUTER.match("POST", "/api/v1/users/me")
    assert found is not None
    assert method_not_allowed("POST", found.route.allow).headers["Allow"] == "GET, HEAD"


def test_404_of_an_unknown_route() -> None:
    assert ROUTER.match("GET", "/nowhere") is None
    problem = not_found()
    assert (problem.status, problem.title) == (404, "Not Found")


def test_an_unexpected_error_is_a_500_that_leaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        problem = to_problem(ValueError("password=hunter2"), "GET", "/x")
    assert (problem.status, problem.detail) == (500, INTERNAL_ERROR)
    assert "hunter2" not in json.dumps(body(problem))
    assert "hunter2" in caplog.text  # but the log has it, with the traceback
    assert caplog.records[0].exc_info is not None


def test_a_server_problem_is_logged_a_client_problem_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        to_problem(Problem(404, detail="no such user"), "GET", "/x")
        to_problem(Problem(503, detail="database down"), "GET", "/y")
    assert [record.getMessage() for record in caplog.records] == ["GET /y -> 503 database down"]


def test_a_response_outside_the_contract_is_a_500_without_schema_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = [{"field": "id", "message": "'id' is a required property; schema {...}"}]
    with caplog.at_level(logging.ERROR):
        problem = contract_breach("GET", "/x", errors)
    assert problem.status == 500
    assert "required property" not in json.dumps(body(problem))
    assert "required property" in caplog.text


def test_field_errors_never_carry_nul_characters() -> None:
    # An unknown query parameter's name is echoed; the published schemas forbid U+0000 in text.
    problem = validation_problem([{"field": "a\x00b", "message": "is not a parameter"}])
    assert problem.errors == [{"field": "a\\u0000b", "message": "is not a parameter"}]
    assert problem.detail is not None
    assert "\x00" not in problem.detail

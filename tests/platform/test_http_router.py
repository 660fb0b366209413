"""The router: concrete paths before templates, 405 with every method of the matched path."""

from __future__ import annotations

from services.platform.core.contracts import OperationInfo
from services.platform.http.router import Router


def operation(method: str, path: str) -> OperationInfo:
    return OperationInfo(f"{method} {path}", method, path, (), True, ())


ROUTER: Router[str] = Router(
    (operation(method, path), f"{method} {path}")
    for method, path in [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/me"),
        ("GET", "/api/v1/users/{user_id}"),
        ("DELETE", "/api/v1/users/{user_id}"),
        ("PUT", "/api/v1/users/{user_id}/roles"),
        ("GET", "/api/v1/stock/reservations/{order_id}"),
    ]
)


def test_a_concrete_path_wins_over_a_template() -> None:
    found = ROUTER.match("GET", "/api/v1/users/me")
    assert found is not None
    assert found.target == "GET /api/v1/users/me"
    assert found.path_parameters == {}


def test_a_template_captures_its_parameters() -> None:
    found = ROUTER.match("PUT", "/api/v1/users/abc/roles")
    assert found is not None
    assert (found.target, found.path_parameters) == (
        "PUT /api/v1/users/{user_id}/roles",
        {"user_id": "abc"},
    )


def test_the_most_specific_path_decides_the_405() -> None:
    # DELETE exists on /users/{user_id}, but /users/me is the path: 405, not a bad id.
    found = ROUTER.match("DELETE", "/api/v1/users/me")
    assert found is not None
    assert found.target is None
    assert found.route.allow == "GET, HEAD"
    found = ROUTER.match("PATCH", "/api/v1/users")
    assert found is not None
    assert (found.target, found.route.allow) == (None, "GET, HEAD, POST")
    found = ROUTER.match("GET", "/api/v1/users/abc/roles")
    assert found is not None
    assert (found.target, found.route.allow) == (None, "PUT")  # no GET, no HEAD


def test_head_is_served_by_the_get_operation() -> None:
    found = ROUTER.match("HEAD", "/api/v1/users/42")
    assert found is not None
    assert (found.target, found.path_parameters) == (
        "GET /api/v1/users/{user_id}",
        {"user_id": "42"},
    )


def test_unknown_paths_match_nothing() -> None:
    for path in (
        "/api/v1/nothing",
        "/api/v1/users/a/b",
        "/api/v1/users/",
        "/api/v1/stock/reservations/",
    ):
        assert ROUTER.match("GET", path) is None, path


def test_templates_label_metrics() -> None:
    assert ROUTER.template("GET", "/api/v1/users/42") == "/api/v1/users/{user_id}"
    assert ROUTER.template("GET", "/nope") is None

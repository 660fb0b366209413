"""The CORS decision (services/platform/http/cors.py) on the inventory spec's operations: pure,
no app. The same policy answered over HTTP is probed in tests/security/test_cors.py."""

from __future__ import annotations

import pytest

from generated.inventory.operations import OPERATIONS
from services.platform.core.problems import Problem
from services.platform.http.cors import CorsPolicy, is_preflight

APP = "https://app.example.com"
PRODUCT = "/api/v1/products/{product_id}"
PRODUCTS = "/api/v1/products"


def policy(*origins: str) -> CorsPolicy:
    return CorsPolicy(origins, OPERATIONS.values())


def preflight(method: str, request_headers: str = "") -> dict[str, str]:
    headers = {"origin": APP, "access-control-request-method": method}
    if request_headers:
        headers["access-control-request-headers"] = request_headers
    return headers


def refusal(cors: CorsPolicy, origin: str, template: str | None, headers: dict[str, str]) -> str:
    with pytest.raises(Problem) as refused:
        cors.preflight(origin, template, headers)
    assert not any(name.lower().startswith("access-control-") for name in refused.value.headers)
    return refused.value.detail or ""


def test_an_allowed_origin_gets_its_own_origin_back_and_the_exposed_headers() -> None:
    headers = policy(APP, "http://localhost:5173").response_headers(APP)
    assert headers["Access-Control-Allow-Origin"] == APP
    assert headers["Vary"] == "Origin"
    exposed = {name.strip() for name in headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Location", "X-Request-Id", "X-Correlation-Id", "Retry-After"} <= exposed
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= exposed
    assert "Access-Control-Allow-Credentials" not in headers  # no cookies: no credentials mode


def test_origins_compare_without_case_or_trailing_slash() -> None:
    cors = policy("HTTPS://App.Example.com/")
    assert cors.response_headers(APP)["Access-Control-Allow-Origin"] == APP


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.com:8443", None])
def test_another_origin_gets_no_cors_header_but_vary(origin: str | None) -> None:
    assert policy(APP).response_headers(origin) == {"Vary": "Origin"}


def test_without_origins_nothing_is_added() -> None:
    assert policy().response_headers(APP) == {}


def test_any_origin_is_a_constant_star_without_vary() -> None:
    headers = policy("*").response_headers("https://anyone.example")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in headers


def test_a_preflight_grants_the_path_methods_and_the_headers_its_operations_read() -> None:
    granted = policy(APP).preflight(APP, PRODUCT, preflight("PATCH", "if-match, content-type"))
    assert granted["Access-Control-Allow-Origin"] == APP
    assert set(granted["Access-Control-Allow-Methods"].split(", ")) == {
        "GET",
        "HEAD",
        "PATCH",
        "DELETE",
    }
    allowed = {name.strip() for name in granted["Access-Control-Allow-Headers"].split(",")}
    assert {"Authorization", "X-API-Key", "If-Match", "Content-Type", "X-Request-Id"} <= allowed
    assert "Idempotency-Key" not in allowed  # no operation of this path reads it
    assert int(granted["Access-Control-Max-Age"]) > 0
    assert "Origin" in granted["Vary"]


def test_a_creating_path_allows_the_idempotency_key() -> None:
    granted = policy(APP).preflight(APP, PRODUCTS, preflight("POST", "Idempotency-Key"))
    assert "Idempotency-Key" in granted["Access-Control-Allow-Headers"]


def test_a_preflight_from_another_origin_is_refused_naming_the_origin() -> None:
    detail = refusal(policy(APP), "https://evil.example", PRODUCT, preflight("GET"))
    assert "https://evil.example" in detail


def test_a_preflight_without_configured_origins_is_refused_naming_the_setting() -> None:
    assert "ERP_CORS_ORIGINS" in refusal(policy(), APP, PRODUCT, preflight("GET"))


def test_a_preflight_for_a_method_the_path_lacks_is_refused() -> None:
    detail = refusal(policy(APP), APP, PRODUCT, preflight("PUT"))
    assert "PUT" in detail
    assert "PATCH" in detail


def test_a_preflight_asking_for_an_unknown_header_is_refused_naming_it() -> None:
    detail = refusal(policy(APP), APP, PRODUCT, preflight("GET", "authorization, x-secret"))
    assert "x-secret" in detail
    assert "authorization" not in detail.split(";")[0]


def test_safelisted_headers_need_no_permission() -> None:
    granted = policy(APP).preflight(APP, PRODUCT, preflight("GET", "accept, accept-language"))
    assert granted["Access-Control-Allow-Origin"] == APP


def test_a_preflight_for_an_unknown_path_is_a_404() -> None:
    with pytest.raises(Problem) as refused:
        policy(APP).preflight(APP, None, preflight("GET"))
    assert refused.value.status == 404


def test_only_an_options_request_with_origin_and_requested_method_is_a_preflight() -> None:
    assert is_preflight("OPTIONS", preflight("GET"))
    assert not is_preflight("OPTIONS", {"origin": APP})
    assert not is_preflight("GET", preflight("GET"))

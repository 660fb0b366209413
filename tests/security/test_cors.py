"""CORS probes against running services: `erp serve auth` on the real servers with one allowed
origin, and auth in embedded mode with its default local dev origins."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import pytest

from services.auth.service import definition as auth_definition
from tests.support.embedded import StartEmbedded
from tests.support.processes import ServiceProcess

APP = "https://app.example.com"
EVIL = "https://evil.example"
USER = "/api/v1/users/00000000-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def module_env(service_env: Mapping[str, str]) -> Mapping[str, str]:
    return {**service_env, "ERP_CORS_ORIGINS": APP}


def preflight(origin: str, method: str, request_headers: str = "") -> dict[str, str]:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if request_headers:
        headers["Access-Control-Request-Headers"] = request_headers
    return headers


def cors_headers(response: httpx.Response) -> set[str]:
    return {name for name in response.headers if name.lower().startswith("access-control-")}


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.mark.integration
def test_a_preflight_from_the_allowed_origin_is_granted(auth_service: ServiceProcess) -> None:
    response = httpx.options(
        auth_service.url + USER, headers=preflight(APP, "PATCH", "authorization, if-match")
    )
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == APP
    assert {"patch", "get", "delete"} <= listed(response.headers["access-control-allow-methods"])
    allowed = listed(response.headers["access-control-allow-headers"])
    assert {"authorization", "x-api-key", "if-match", "content-type"} <= allowed
    assert "origin" in listed(response.headers["vary"])


@pytest.mark.integration
def test_a_creating_operation_allows_the_idempotency_key(auth_service: ServiceProcess) -> None:
    response = httpx.options(
        auth_service.url + "/api/v1/users",
        headers=preflight(APP, "POST", "content-type, idempotency-key, authorization"),
    )
    assert response.status_code == 204, response.text


@pytest.mark.integration
def test_a_preflight_from_another_origin_is_refused_clearly(auth_service: ServiceProcess) -> None:
    response = httpx.options(auth_service.url + USER, headers=preflight(EVIL, "GET"))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert EVIL in response.json()["detail"]
    assert cors_headers(response) == set()


@pytest.mark.integration
def test_a_preflight_for_a_header_no_operation_reads_is_refused(
    auth_service: ServiceProcess,
) -> None:
    response = httpx.options(auth_service.url + USER, headers=preflight(APP, "GET", "x-secret"))
    assert response.status_code == 403
    assert "x-secret" in response.json()["detail"]
    assert cors_headers(response) == set()


@pytest.mark.integration
def test_an_allowed_origin_can_read_the_answer_and_its_headers(
    auth_service: ServiceProcess,
) -> None:
    # A login that fails still has to be readable by the browser app (problem+json, ids).
    response = httpx.post(
        auth_service.url + "/api/v1/auth/login",
        json={"email": "nobody@example.com", "password": "not-the-password"},
        headers={"Origin": APP},
    )
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP
    exposed = listed(response.headers["access-control-expose-headers"])
    assert {"etag", "location", "x-request-id", "retry-after", "x-ratelimit-remaining"} <= exposed
    assert "origin" in listed(response.headers["vary"])


@pytest.mark.integration
def test_another_origin_gets_no_cors_header(auth_service: ServiceProcess) -> None:
    response = httpx.get(auth_service.url + "/health/live", headers={"Origin": EVIL})
    assert response.status_code == 200
    assert cors_headers(response) == set()
    assert "origin" in listed(response.headers["vary"])  # a cache must not share it across


@pytest.mark.integration
def test_a_plain_options_request_is_still_a_405(auth_service: ServiceProcess) -> None:
    response = httpx.options(auth_service.url + USER)
    assert response.status_code == 405
    assert "PATCH" in response.headers["allow"]


async def test_embedded_mode_allows_the_usual_local_dev_origins(embedded: StartEmbedded) -> None:
    auth = await embedded(auth_definition, http=True)
    for origin in ("http://localhost:5173", "http://localhost:3000", "http://127.0.0.1:5173"):
        response = await auth.http.options(USER, headers=preflight(origin, "GET", "authorization"))
        assert response.status_code == 204, (origin, response.text)
        assert response.headers["access-control-allow-origin"] == origin
    refused = await auth.http.options(USER, headers=preflight(EVIL, "GET"))
    assert refused.status_code == 403

"""The docs work as written: each documented example request, sent as it stands on the demo
data set (embedded, as `erp up` runs without servers), gets the documented success status;
every documented example conforms to its schema; and the error examples are what the server
answers (docs/adr/0008-docs-that-work.md)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from services.auth.service import definition as auth_definition
from services.inventory.service import definition as inventory_definition
from services.platform.core.contracts import KIT_OPERATIONS
from services.platform.http.security import JWKS_PATH, JwksKeySource
from services.platform.runtime.app import spec_path
from services.registry import load_demo
from tests.support.embedded import EmbeddedService, StartEmbedded
from tools.codegen.examples import example_path

METHODS = ("get", "put", "post", "delete", "patch")
DOCUMENTS = {name: json.loads(spec_path(name).read_bytes()) for name in ("auth", "inventory")}


def _operations(service: str) -> Iterator[tuple[str, str, dict[str, Any], list[Any]]]:
    for path, item in DOCUMENTS[service]["paths"].items():
        for method in METHODS:
            if method in item:
                parameters = [*item.get("parameters", []), *item[method].get("parameters", [])]
                yield path, method, item[method], parameters


def _example_requests() -> list[Any]:
    cases = []
    for service in ("inventory",):  # auth's demo set has its login user only so far
        for path, method, operation, parameters in _operations(service):
            if operation["operationId"] not in KIT_OPERATIONS:
                cases.append(
                    pytest.param(
                        service, path, method, operation, parameters, id=operation["operationId"]
                    )
                )
    return cases


@dataclasses.dataclass
class Demo:
    services: dict[str, EmbeddedService]
    token: str


def _login_example() -> Any:
    login = DOCUMENTS["auth"]["paths"]["/api/v1/auth/login"]["post"]
    return login["requestBody"]["content"]["application/json"]["example"]


@pytest.fixture
async def demo(embedded: StartEmbedded) -> Demo:
    """Auth and inventory with the demo data set, inventory verifying auth's tokens over ASGI,
    and a token from the login example, as a reader of the docs would get it."""
    auth = await embedded(auth_definition, http=True)
    jwks = JwksKeySource(f"http://auth.test{JWKS_PATH}", auth.http)
    inventory = await embedded(
        dataclasses.replace(inventory_definition, signing_keys=lambda _ctx: jwks), http=True
    )
    for name, service in (("auth", auth), ("inventory", inventory)):
        await load_demo(name)(service.ctx)
        await load_demo(name)(service.ctx)  # idempotent: seeding twice is fine
    login = await auth.http.post("/api/v1/auth/login", json=_login_example())
    assert login.status_code == 200, login.text
    return Demo({"auth": auth, "inventory": inventory}, login.json()["tokens"]["access_token"])


def _request(
    service: str, path: str, method: str, operation: dict[str, Any], parameters: list[Any]
) -> tuple[str, dict[str, Any]]:
    url = example_path(DOCUMENTS[service], path, parameters, operation["operationId"])
    options: dict[str, Any] = {}
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        options["json"] = body["example"]
    return url, options


@pytest.mark.parametrize(
    ("service", "path", "method", "operation", "parameters"), _example_requests()
)
async def test_each_example_request_works_as_written_on_the_demo_data(
    demo: Demo,
    service: str,
    path: str,
    method: str,
    operation: dict[str, Any],
    parameters: list[Any],
) -> None:
    url, options = _request(service, path, method, operation, parameters)
    headers = {} if operation.get("security") == [] else {"Authorization": f"Bearer {demo.token}"}
    response = await demo.services[service].http.request(
        method.upper(), url, headers=headers, **options
    )
    success = min(status for status in operation["responses"] if status.startswith("2"))
    assert response.status_code == int(success), response.text

"""API5 Broken function level authorization: every secured operation of every service, read
from the generated `OPERATIONS` (so an operation added to a spec is probed without a change
here), refused to a caller without credentials (401) and to callers without its permissions
(403): a user without roles, and a partner API key holding every other permission.

Requests name a random id in each path parameter and carry the spec's own example body, so
they are the calls a client would make: without the check under attack they would reach the
handler. `test_the_probes_catch_*` run the same probes against operations whose check is known
to be absent, and expect them to fail.

API9 Improper inventory management too: nothing answers but the spec's operations.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from services.platform.core.contracts import OperationInfo
from services.registry import SERVICES
from tests.support.accounts import Member
from tests.support.http import Api, new_ip
from tests.support.operations import all_operations, call, operation_of
from tests.support.problems import refusal
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

KeyMaker = Callable[[tuple[str, ...]], str]


def secured(*, with_permissions: bool) -> list[tuple[str, str]]:
    """(service, operationId) of every secured operation (with x-permissions, if asked)."""
    return [
        (service, operation.operation_id)
        for service, operation in all_operations()
        if not operation.public and (operation.permissions or not with_permissions)
    ]


SECURED = secured(with_permissions=False)
WITH_PERMISSIONS = secured(with_permissions=True)


def ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{service}.{operation_id}" for service, operation_id in cases]


def assert_refused_anonymous(api: Api, service: str, operation: OperationInfo) -> None:
    response = call(api, service, operation)
    refusal(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    if operation.method == "GET":  # HEAD is answered from the same operation, without a body
        head = api("HEAD", response.request.url.path)
        assert head.status_code == 401, head.status_code


def assert_refused_unknown_key(api: Api, service: str, operation: OperationInfo) -> None:
    forged = f"erp_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}"
    refusal(call(api, service, operation, api_key=forged), 401)


def assert_forbidden(api: Api, service: str, operation: OperationInfo, **credentials: Any) -> None:
    detail = refusal(call(api, service, operation, **credentials), 403)["detail"]
    assert detail == f"Missing permission: {', '.join(sorted(operation.permissions))}", detail


@pytest.fixture(scope="module")
def clients(served: Mapping[str, ServiceProcess]) -> Iterator[Mapping[str, Api]]:
    opened = {name: Api(server.url, ip=new_ip()) for name, server in served.items()}
    yield opened
    for api in opened.values():
        api.close()


@pytest.fixture(scope="module")
def catalogue(clients: Mapping[str, Api], root_token: str) -> frozenset[str]:
    listed = clients["auth"].get("/api/v1/permissions", token=root_token)
    assert listed.status_code == 200, listed.text
    return frozenset(permission["slug"] for permission in listed.json()["data"])


@pytest.fixture(scope="module")
def keys_lacking(
    clients: Mapping[str, Api], root_token: str, catalogue: frozenset[str]
) -> KeyMaker:
    """`keys_lacking(permissions)`: a partner key holding every permission but those."""
    made: dict[frozenset[str], str] = {}

    def key(permissions: tuple[str, ...]) -> str:
        lacking = frozenset(permissions)
        if lacking not in made:
            body = {
                "name": f"all but {sorted(lacking)}",
                "permissions": sorted(catalogue - lacking),
            }
            made[lacking] = clients["auth"].created("/api/v1/api-keys", body, token=root_token)[
                "key"
            ]
        return made[lacking]

    return key


def test_every_service_of_the_platform_is_probed(served: Mapping[str, ServiceProcess]) -> None:
    assert set(served) == set(SERVICES)


@pytest.mark.parametrize(("service", "operation_id"), SECURED, ids=ids(SECURED))
def test_an_anonymous_caller_is_refused(
    clients: Mapping[str, Api], service: str, operation_id: str
) -> None:
    api, operation = clients[service], operation_of(service, operation_id)
    assert_refused_anonymous(api, service, operation)
    assert_refused_unknown_key(api, service, operation)


@pytest.mark.parametrize(("service", "operation_id"), WITH_PERMISSIONS, ids=ids(WITH_PERMISSIONS))
def test_a_user_without_the_permission_is_refused(
    clients: Mapping[str, Api], plain_member: Member, service: str, operation_id: str
) -> None:
    assert_forbidden(
        clients[service],
        service,
        operation_of(service, operation_id),
        token=plain_member.access_token,
    )


@pytest.mark.parametrize(("service", "operation_id"), WITH_PERMISSIONS, ids=ids(WITH_PERMISSIONS))
def test_a_key_with_every_other_permission_is_refused(
    clients: Mapping[str, Api], keys_lacking: KeyMaker, service: str, operation_id: str
) -> None:
    operation = operation_of(service, operation_id)
    assert_forbidden(
        clients[service], service, operation, api_key=keys_lacking(operation.permissions)
    )


SPELLINGS: dict[str, Callable[[str], str]] = {
    "trailing-slash": lambda path: f"{path}/",
    "double-slash": lambda path: f"/{path}",
    "upper-case": str.upper,
}


@pytest.mark.parametrize(("service", "operation_id"), SECURED, ids=ids(SECURED))
def test_another_spelling_of_the_path_reaches_nothing(
    clients: Mapping[str, Api], service: str, operation_id: str
) -> None:
    """The router matches the spec's paths exactly: no variant routes around the check."""
    operation = operation_of(service, operation_id)
    path = call(clients[service], service, operation).request.url.path
    for spelling, respell in SPELLINGS.items():
        response = clients[service](operation.method, respell(path))
        assert response.status_code == 404, (spelling, response.status_code, response.text)
        refusal(response, 404)


# Old versions, debug and admin consoles, files a deployment may leave behind (API9).
UNDECLARED = [
    "/api/v2/users",
    "/api/v0/products",
    "/api/users",
    "/admin",
    "/debug",
    "/docs",
    "/redoc",
    "/.env",
    "/.git/config",
    "/server-status",
    "/actuator/env",
    "/openapi.yaml",
    # Under Swagger UI's static files: nothing but its own files answers there.
    "/ui/.env",
    "/ui/x",
]


@pytest.mark.parametrize("path", UNDECLARED)
def test_no_undeclared_endpoint_answers(clients: Mapping[str, Api], path: str) -> None:
    for api in clients.values():
        refusal(api.get(path), 404)
        refusal(api.post(path), 405 if path.startswith("/ui/") else 404)


# --- the probes themselves ------------------------------------------------------------------


def test_the_probes_catch_an_operation_without_authentication(
    clients: Mapping[str, Api],
) -> None:
    """The public catalogue read, taken for a secured one: what a dropped check looks like."""
    unguarded = dataclasses.replace(
        operation_of("inventory", "get_product"),
        public=False,
        permissions=("inventory.products.view",),
    )
    # The handler answers (a random id: 404) where the probe expects the 401.
    with pytest.raises(AssertionError, match='"status":404'):
        assert_refused_anonymous(clients["inventory"], "inventory", unguarded)


def test_the_probes_catch_an_operation_checking_the_wrong_permission(
    clients: Mapping[str, Api], keys_lacking: KeyMaker
) -> None:
    """Stock reads need inventory.stock.view; were the spec to say inventory.products.view
    while the service kept checking the other, a key lacking only the stated one gets in."""
    misread = dataclasses.replace(
        operation_of("inventory", "list_stock"), permissions=("inventory.products.view",)
    )
    # The stock list comes back where the probe expects the 403.
    with pytest.raises(AssertionError, match='"data":'):
        assert_forbidden(
            clients["inventory"], "inventory", misread, api_key=keys_lacking(misread.permissions)
        )

"""The docs work as written, on the demo data set in embedded mode (as `erp up` runs without
servers): each documented example request gets the documented success status, and the
documented 401 and 400 examples are what the server answers (docs/adr/0008-docs-that-work.md).

One of each service (auth, inventory, sales, financial), started and seeded once for the
module (a start costs seconds, a request milliseconds): the cases share the data, as a reader
trying the docs does, so they run in an order that keeps every example valid — reads, then the
writes of Carlos's credentials (before the examples that deactivate him), then the other
writes, then the deletions (which name rows of their own, so even out of order they would break
no other example). An example request carries the examples of its required query parameters.

The secrets the server mints (refresh, verification and reset tokens) are placeholders in the
examples; their cases take the value where the docs say it comes from: the login response, the
event the notification service e-mails.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import col, select

from services.auth.demo import CARLOS_EMAIL, DEMO_USER_PASSWORD
from services.auth.service import definition as auth_definition
from services.financial.service import definition as financial_definition
from services.inventory.service import definition as inventory_definition
from services.logistics.service import definition as logistics_definition
from services.notification.service import definition as notification_definition
from services.platform.core.contracts import KIT_OPERATIONS
from services.platform.http.security import JWKS_PATH, JwksKeySource
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.app import spec_path
from services.registry import load_demo
from services.sales.service import definition as sales_definition
from tests.support.embedded import (
    EmbeddedService,
    MigratedDatabases,
    embedded_service,
    embedded_settings,
    fresh_embedded_servers,
)
from tests.support.polling import eventually
from tools.codegen.examples import example_path

METHODS = ("get", "put", "post", "delete", "patch")
SERVICES = ("auth", "inventory", "sales", "financial", "logistics", "notification")
DOCUMENTS = {name: json.loads(spec_path(name).read_bytes()) for name in SERVICES}
# Carlos's credentials, in this order, before any example deactivates him or changes his roles:
# resend needs his login, verify the token resend sent, reset his (still active) account.
CARLOS_FIRST = ("resend_verification_email", "verify_email", "reset_password")
UNKNOWN_PARAMETER = "sort: is not a parameter of this operation"  # the shared 400 example's


@dataclasses.dataclass(frozen=True)
class Operation:
    service: str
    path: str
    method: str
    spec: dict[str, Any]
    parameters: list[Any]

    @property
    def id(self) -> str:
        return str(self.spec["operationId"])

    @property
    def public(self) -> bool:
        return self.spec.get("security") == []

    def example(self, status: str) -> Any:
        media = self.spec["responses"].get(status, {}).get("content", {})
        return media.get("application/problem+json", {}).get("example")

    def request(self) -> tuple[str, dict[str, Any]]:
        """The example request: its path with the parameters' examples, its body's example,
        the examples of its required headers (a required Idempotency-Key) as `headers`."""
        document = DOCUMENTS[self.service]
        url = example_path(document, self.path, self.parameters, self.id)
        required = [
            parameter
            for parameter in (_resolved(document, raw) for raw in self.parameters)
            if parameter.get("required")
        ]
        query = {p["name"]: p["example"] for p in required if p["in"] == "query"}
        if query:
            url += "?" + urlencode(query)
        options: dict[str, Any] = {}
        headers = {p["name"]: p["example"] for p in required if p["in"] == "header"}
        if headers:
            options["headers"] = headers
        body = self.spec.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            options["json"] = body["example"]
        return url, options


def _resolved(document: dict[str, Any], parameter: dict[str, Any]) -> dict[str, Any]:
    """A parameter object, or the component its `$ref` names."""
    ref = parameter.get("$ref")
    if ref is None:
        return parameter
    found: dict[str, Any] = document["components"]["parameters"][ref.rsplit("/", 1)[-1]]
    return found


def _operations() -> Iterator[Operation]:
    for service in SERVICES:
        for path, item in DOCUMENTS[service]["paths"].items():
            for method in METHODS:
                if method in item and item[method]["operationId"] not in KIT_OPERATIONS:
                    parameters = [*item.get("parameters", []), *item[method].get("parameters", [])]
                    yield Operation(service, path, method, item[method], parameters)


OPERATIONS = list(_operations())


def _order(operation: Operation) -> tuple[int, int]:
    if operation.id in CARLOS_FIRST:
        return 1, CARLOS_FIRST.index(operation.id)
    return {"get": 0, "delete": 3}.get(operation.method, 2), 0


def _cases(operations: list[Operation]) -> list[Any]:
    ordered = sorted(operations, key=_order)  # stable: document order within a group
    return [pytest.param(operation, id=operation.id) for operation in ordered]


@dataclasses.dataclass
class Demo:
    services: dict[str, EmbeddedService]
    token: str
    refresh_token: str

    @property
    def auth(self) -> EmbeddedService:
        return self.services["auth"]

    async def login(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.auth.http.post("/api/v1/auth/login", json=body)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()["tokens"]
        return tokens

    async def newest_payload(self, event: str, email: str) -> dict[str, Any]:
        """The payload of the newest `event` about `email` auth committed (the outbox keeps
        what the relay published), as the notification service receives it; waited for, since
        some (a password reset's) are written by a job after the answer."""
        return await eventually(
            lambda: self._newest_payload(event, email), what=f"a {event} about {email}"
        )

    async def _newest_payload(self, event: str, email: str) -> dict[str, Any] | None:
        async with self.auth.ctx.database.session() as session:
            bodies = await session.scalars(
                select(OutboxMessage.body)
                .where(col(OutboxMessage.event_name) == event)
                .order_by(col(OutboxMessage.id).desc())
            )
            for body in bodies:
                payload: dict[str, Any] = json.loads(body)["payload"]
                if payload["email"] == email:
                    return payload
        return None


def _login_example() -> dict[str, Any]:
    login = DOCUMENTS["auth"]["paths"]["/api/v1/auth/login"]["post"]
    example: dict[str, Any] = login["requestBody"]["content"]["application/json"]["example"]
    return example


@pytest.fixture(scope="module")
async def demo(
    tmp_path_factory: pytest.TempPathFactory, migrated_databases: MigratedDatabases
) -> AsyncIterator[Demo]:
    """Every service with the demo data set (seeded twice: it is idempotent), the others
    verifying auth's tokens over ASGI, and a session from the login example, as a reader of the
    docs would get it."""
    data = tmp_path_factory.mktemp("docs-demo")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fresh_embedded_servers(monkeypatch)
        async with AsyncExitStack() as stack:

            async def start(definition: Any) -> EmbeddedService:
                settings = embedded_settings(definition.name, data)
                await migrated_databases.copy(definition, settings)
                service = await stack.enter_async_context(
                    embedded_service(definition, settings, http=True)
                )
                await load_demo(definition.name)(service.ctx)
                await load_demo(definition.name)(service.ctx)
                return service

            auth = await start(auth_definition)
            jwks = JwksKeySource(f"http://auth.test{JWKS_PATH}", auth.http)
            inventory = await start(
                dataclasses.replace(inventory_definition, signing_keys=lambda _ctx: jwks)
            )
            sales = await start(
                dataclasses.replace(sales_definition, signing_keys=lambda _ctx: jwks)
            )
            financial = await start(
                dataclasses.replace(financial_definition, signing_keys=lambda _ctx: jwks)
            )
            logistics = await start(
                dataclasses.replace(logistics_definition, signing_keys=lambda _ctx: jwks)
            )
            notification = await start(
                dataclasses.replace(notification_definition, signing_keys=lambda _ctx: jwks)
            )
            demo = Demo(
                {
                    "auth": auth,
                    "inventory": inventory,
                    "sales": sales,
                    "financial": financial,
                    "logistics": logistics,
                    "notification": notification,
                },
                "",
                "",
            )
            tokens = await demo.login(_login_example())
            demo.token, demo.refresh_token = tokens["access_token"], tokens["refresh_token"]
            yield demo


Prepare = Callable[[Demo, dict[str, Any]], Awaitable[tuple[str | None, dict[str, Any]]]]


async def _refresh(demo: Demo, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    return None, {"refresh_token": demo.refresh_token}  # the login response's


async def _logout(demo: Demo, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    # Sessions of its own: logging out blacklists the presented token, the other cases' one.
    ending, other = await demo.login(_login_example()), await demo.login(_login_example())
    return ending["access_token"], {"refresh_token": other["refresh_token"]}


async def _resend(demo: Demo, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    carlos = await demo.login({"email": CARLOS_EMAIL, "password": DEMO_USER_PASSWORD})
    return carlos["access_token"], body


async def _verify(demo: Demo, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    sent = await demo.newest_payload("auth.user.email_verification_requested", CARLOS_EMAIL)
    return None, {"token": sent["verification_token"]}


async def _reset(demo: Demo, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    asked = await demo.auth.http.post("/api/v1/auth/forgot-password", json={"email": CARLOS_EMAIL})
    assert asked.status_code == 202, asked.text
    sent = await demo.newest_payload("auth.user.password_reset_requested", CARLOS_EMAIL)
    return None, {**body, "token": sent["reset_token"]}


# The operations whose example holds a secret the server mints: where the docs say it comes from.
CHAINED: dict[str, Prepare] = {
    "refresh_token": _refresh,
    "logout": _logout,
    "resend_verification_email": _resend,
    "verify_email": _verify,
    "reset_password": _reset,
}


@pytest.mark.parametrize("operation", _cases([op for op in OPERATIONS if not op.public]))
async def test_the_401_example_is_the_answer_without_credentials(
    demo: Demo, operation: Operation
) -> None:
    url, options = operation.request()
    response = await demo.services[operation.service].http.request(
        operation.method.upper(), url, **options
    )
    assert response.status_code == 401, response.text
    assert response.json() == operation.example("401")


def _shared_400(operation: Operation) -> bool:
    example = operation.example("400")
    return example is not None and example.get("detail") == UNKNOWN_PARAMETER


@pytest.mark.parametrize("operation", _cases([op for op in OPERATIONS if _shared_400(op)]))
async def test_the_400_example_is_the_answer_to_the_example_request_with_sort(
    demo: Demo, operation: Operation
) -> None:
    url, options = operation.request()
    url += ("&" if "?" in url else "?") + "sort=name"  # beside the example's own query
    headers = options.pop("headers", {})
    if not operation.public:
        headers["Authorization"] = f"Bearer {demo.token}"
    response = await demo.services[operation.service].http.request(
        operation.method.upper(), url, headers=headers, **options
    )
    assert response.status_code == 400, response.text
    assert response.json() == operation.example("400")


def test_the_400_sample_covers_every_service_and_every_method() -> None:
    sampled = {(op.service, op.method) for op in OPERATIONS if _shared_400(op)}
    assert {service for service, _ in sampled} == set(SERVICES)
    assert {method for _, method in sampled} == {"get", "post", "put", "patch", "delete"}


@pytest.mark.parametrize("operation", _cases(OPERATIONS))
async def test_each_example_request_works_as_written_on_the_demo_data(
    demo: Demo, operation: Operation
) -> None:
    url, options = operation.request()
    token = None if operation.public else demo.token
    prepare = CHAINED.get(operation.id)
    if prepare is not None:
        chained_token, options["json"] = await prepare(demo, options.get("json", {}))
        token = chained_token or token
        if not options["json"]:
            del options["json"]
    headers = options.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await demo.services[operation.service].http.request(
        operation.method.upper(), url, headers=headers, **options
    )
    success = min(status for status in operation.spec["responses"] if status.startswith("2"))
    assert response.status_code == int(success), response.text


def test_every_operation_with_a_minted_secret_is_chained() -> None:
    """A case in CHAINED names a real operation (a renamed one would silently send the
    placeholder)."""
    assert set(CHAINED) <= {op.id for op in OPERATIONS}

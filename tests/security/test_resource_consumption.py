"""API4 Unrestricted resource consumption: what one request may ask the services to read,
parse or return is bounded, and a request beyond a bound is refused before it costs anything
— page sizes and numbers (every paginated operation of the specs), body sizes (every operation
with a body, declared or streamed), JSON nesting, and array lengths (every array of every
request schema).
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from services.platform.core.contracts import OperationInfo
from services.registry import load_definition
from tests.security.conftest import MAX_BODY_BYTES
from tests.support.http import Api, new_ip
from tests.support.operations import all_operations, call, example_body, operation_of, schema_of
from tests.support.problems import refusal
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000


def cases(has: Callable[[OperationInfo], bool]) -> list[tuple[str, str]]:
    return [(service, op.operation_id) for service, op in all_operations() if has(op)]


def query_names(operation: OperationInfo) -> set[str]:
    return {p.wire_name for p in operation.parameters if p.location == "query"}


PAGINATED = cases(lambda operation: "per_page" in query_names(operation))
NUMBERED = cases(lambda operation: "page" in query_names(operation))
WITH_BODY = cases(lambda operation: operation.body is not None)


def ids(found: list[tuple[str, str]]) -> list[str]:
    return [f"{service}.{operation_id}" for service, operation_id in found]


@pytest.fixture(scope="module")
def clients(served: Mapping[str, ServiceProcess], root_token: str) -> Iterator[Mapping[str, Api]]:
    """Every service as the super-admin: no refusal below is for want of a permission."""
    opened = {name: Api(server.url, root_token, ip=new_ip()) for name, server in served.items()}
    yield opened
    for api in opened.values():
        api.close()


def assert_field_refused(response: Any, field: str) -> None:
    errors = refusal(response, 400)["errors"]
    assert [error["field"] for error in errors] == [field], errors


@pytest.mark.parametrize("per_page", [MAX_PER_PAGE + 1, 10**30, 0, -1])
@pytest.mark.parametrize(("service", "operation_id"), PAGINATED, ids=ids(PAGINATED))
def test_a_page_size_beyond_the_bounds_is_refused(
    clients: Mapping[str, Api], service: str, operation_id: str, per_page: int
) -> None:
    operation = operation_of(service, operation_id)
    response = call(clients[service], service, operation, params={"per_page": per_page})
    assert_field_refused(response, "per_page")


@pytest.mark.parametrize(("service", "operation_id"), PAGINATED, ids=ids(PAGINATED))
def test_the_largest_page_size_is_served(
    clients: Mapping[str, Api], service: str, operation_id: str
) -> None:
    """The bound the refusals above are measured against (a random id in the path: 404)."""
    operation = operation_of(service, operation_id)
    response = call(clients[service], service, operation, params={"per_page": MAX_PER_PAGE})
    if response.status_code == 404:
        refusal(response, 404)
    else:
        assert response.status_code == 200, response.text
        assert response.json()["meta"]["per_page"] == MAX_PER_PAGE


@pytest.mark.parametrize(("service", "operation_id"), NUMBERED, ids=ids(NUMBERED))
def test_a_page_number_beyond_the_bounds_is_refused(
    clients: Mapping[str, Api], service: str, operation_id: str
) -> None:
    operation = operation_of(service, operation_id)
    for page in (MAX_PAGE + 1, 2**63, 0):
        assert_field_refused(
            call(clients[service], service, operation, params={"page": page}), "page"
        )


def streamed(body: bytes, chunk: int = 8192) -> Iterator[bytes]:
    """The body sent in chunks without a Content-Length: only counting the bytes stops it."""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


@pytest.mark.parametrize("sent", ["declared", "streamed"])
@pytest.mark.parametrize(("service", "operation_id"), WITH_BODY, ids=ids(WITH_BODY))
def test_a_body_over_the_limit_is_refused_with_413(
    clients: Mapping[str, Api], service: str, operation_id: str, sent: str
) -> None:
    operation = operation_of(service, operation_id)
    oversized = b" " * (MAX_BODY_BYTES + 1)
    content: Any = oversized if sent == "declared" else streamed(oversized)
    response = call(
        clients[service],
        service,
        operation,
        content=content,
        headers={"Content-Type": "application/json"},
    )
    detail = refusal(response, 413)["detail"]
    assert detail == f"The body is larger than {MAX_BODY_BYTES} bytes.", detail


def padded(body: dict[str, Any]) -> bytes:
    """`body` as JSON with trailing whitespace up to exactly the limit."""
    text = json.dumps(body).encode()
    return text + b" " * (MAX_BODY_BYTES - len(text))


def test_a_body_of_exactly_the_limit_is_served(clients: Mapping[str, Api]) -> None:
    """The bound the 413s are measured against: the setting's, not some other one."""
    product = {
        "sku": f"LIM-{uuid.uuid4().hex[:10].upper()}",
        "name": "At the limit",
        "price": "1.00",
    }
    key = {"name": "At the limit", "permissions": ["inventory.stock.view"]}
    for service, path, body in (
        ("inventory", "/api/v1/products", product),
        ("auth", "/api/v1/api-keys", key),
    ):
        response = clients[service].post(
            path, content=padded(body), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 201, response.text


# The deepest fits in the body limit as objects too (six bytes a level).
NESTING = [64, 500, 1_000, 10_000]


@pytest.mark.parametrize("depth", NESTING)
@pytest.mark.parametrize(
    ("service", "operation_id"),
    [("auth", "create_user"), ("inventory", "create_product")],
)
@pytest.mark.parametrize("container", ["array", "object"])
@pytest.mark.parametrize("core", ["1", '"\\u00e9"'], ids=["number", "escaped-text"])
def test_deeply_nested_json_is_a_400(
    clients: Mapping[str, Api],
    service: str,
    operation_id: str,
    depth: int,
    container: str,
    core: str,
) -> None:
    # An escape at the core makes the kit look for lone surrogates all the way down.
    opening, closing = ("[", "]") if container == "array" else ('{"a":', "}")
    body = opening * depth + core + closing * depth
    response = call(
        clients[service],
        service,
        operation_of(service, operation_id),
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    refusal(response, 400)


def bounded_arrays() -> list[tuple[str, str, str, int]]:
    """(service, operationId, property, maxItems) of every array property of every request
    body; an array without `maxItems` fails the probe that lists them."""
    found = []
    for service, operation in all_operations():
        if operation.body is None:
            continue
        definition = load_definition(service)
        body = schema_of(definition, operation.body.schema)
        for name, prop in body.get("properties", {}).items():
            resolved = schema_of(definition, prop)
            if resolved.get("type") == "array":
                found.append((service, operation.operation_id, name, resolved.get("maxItems", -1)))
    return found


ARRAYS = bounded_arrays()


def test_every_array_a_request_may_carry_is_bounded() -> None:
    unbounded = [case for case in ARRAYS if case[3] < 0]
    assert ARRAYS
    assert not unbounded, f"arrays without maxItems: {unbounded}"


@pytest.mark.parametrize(
    ("service", "operation_id", "name", "max_items"),
    ARRAYS,
    ids=[f"{s}.{o}.{n}" for s, o, n, _ in ARRAYS],
)
def test_an_array_over_its_max_items_is_refused(
    clients: Mapping[str, Api], service: str, operation_id: str, name: str, max_items: int
) -> None:
    operation = operation_of(service, operation_id)
    body = dict(example_body(service, operation))
    # Distinct, well-formed items (role or permission slugs): the length is all that is wrong.
    body[name] = [f"probe.many.{letters(n)}" for n in range(max_items + 1)]
    if "role" in name:
        body[name] = [f"probe-{letters(n)}" for n in range(max_items + 1)]
    assert operation.body is not None
    definition = load_definition(service)
    items = schema_of(definition, schema_of(definition, operation.body.schema)["properties"][name])
    choices = schema_of(definition, items.get("items", {})).get("enum")
    if choices:
        # Values of an enum (a carrier's service types): its members in turn, one too many.
        body[name] = [choices[n % len(choices)] for n in range(max_items + 1)]
    example = example_body(service, operation).get(name)
    if isinstance(example, list) and example and isinstance(example[0], dict):
        # Objects (a customer's addresses): the documented one, once too often.
        body[name] = [example[0]] * (max_items + 1)
    response = call(clients[service], service, operation, json=body)
    assert_field_refused(response, name)


def letters(n: int) -> str:
    """n in base 26, written a..z (slugs take no digits)."""
    word = ""
    while True:
        n, digit = divmod(n, 26)
        word = string.ascii_lowercase[digit] + word
        if n == 0:
            return word

"""Injection (API8 Security misconfiguration / API10 unsafe input): SQL-ish text, NUL bytes,
CR/LF in header values, lone UTF-16 surrogates, path traversal in ids and forged keyset
cursors. Each is refused with a 400/404 problem — or, where it is just text (a search, a
name), taken literally — never a 500, and the data is as it was.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.support.accounts import Account
from tests.support.http import Api, new_ip, send_raw
from tests.support.operations import all_operations, concrete_path
from tests.support.problems import refusal
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

SQL_TEXT = [
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "'; DROP TABLE products; --",
    "1; SELECT pg_sleep(5)",
    "%' UNION SELECT password_hash FROM users --",
    "%",
    "_",
    "\\",
]


@pytest.fixture(scope="module")
def inventory(inventory_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    with Api(inventory_app.url, root_token, ip=new_ip()) as api:
        yield api


@pytest.fixture(scope="module")
def clients(served: Mapping[str, ServiceProcess], root_token: str) -> Iterator[Mapping[str, Api]]:
    """Every service as the super-admin, by name."""
    opened = {name: Api(server.url, root_token, ip=new_ip()) for name, server in served.items()}
    yield opened
    for api in opened.values():
        api.close()


@pytest.fixture(scope="module")
def auth(auth_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    with Api(auth_app.url, root_token, ip=new_ip()) as api:
        yield api


def rows(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        return count


@pytest.fixture(scope="module")
def searchable(inventory: Api, root: Account) -> dict[str, str]:
    """Something for every filter below to find (a filter that matched everything would find
    it too): the value each one finds it by."""
    body = {
        "sku": f"INJ-{uuid.uuid4().hex[:10].upper()}",
        "name": "Injection probe",
        "price": "2.00",
    }
    product = inventory.created("/api/v1/products", body)
    inventory.created("/api/v1/categories", {"name": f"Injection probe {uuid.uuid4().hex[:6]}"})
    receipt = {
        "product_id": product["id"],
        "quantity": 1,
        "reason": "injection probe",
        "reference": "INJ-REF",
    }
    inventory.created("/api/v1/stock/receive", receipt)
    return {
        "/api/v1/products": "Injection probe",
        "/api/v1/categories": "Injection probe",
        "/api/v1/stock/movements": "INJ-REF",
        "/api/v1/users": root.email,
        "/api/v1/auth/audit-log": "auth.login.succeeded",
    }


SEARCHES = [
    ("inventory", "/api/v1/products", "search"),
    ("inventory", "/api/v1/categories", "search"),
    ("inventory", "/api/v1/stock/movements", "reference"),
    ("auth", "/api/v1/users", "search"),
    ("auth", "/api/v1/auth/audit-log", "action"),
]
SEARCH_IDS = [f"{service}{path}" for service, path, _ in SEARCHES]


@pytest.mark.parametrize(("service", "path", "name"), SEARCHES, ids=SEARCH_IDS)
def test_each_filter_finds_what_it_names(
    inventory: Api, auth: Api, searchable: dict[str, str], service: str, path: str, name: str
) -> None:
    """So "matches nothing" below is the value taken literally, not a filter ignored."""
    api = inventory if service == "inventory" else auth
    found = api.get(path, params={name: searchable[path]})
    assert found.status_code == 200, found.text
    assert found.json()["data"], found.text


@pytest.mark.parametrize("value", SQL_TEXT)
@pytest.mark.parametrize(("service", "path", "name"), SEARCHES, ids=SEARCH_IDS)
def test_sql_in_a_filter_is_text_that_matches_nothing(
    inventory: Api,
    auth: Api,
    inventory_db: Engine,
    searchable: dict[str, str],
    service: str,
    path: str,
    name: str,
    value: str,
) -> None:
    api = inventory if service == "inventory" else auth
    before = rows(inventory_db, "products")
    response = api.get(path, params={name: value})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [], response.text
    assert rows(inventory_db, "products") == before


@pytest.mark.parametrize(("service", "path", "name"), SEARCHES, ids=SEARCH_IDS)
def test_a_nul_byte_in_a_filter_is_a_400(
    inventory: Api, auth: Api, service: str, path: str, name: str
) -> None:
    api = inventory if service == "inventory" else auth
    errors = refusal(api.get(f"{path}?{name}=a%00b"), 400)["errors"]
    assert [error["field"] for error in errors] == [name]


@pytest.mark.parametrize("value", SQL_TEXT)
def test_sql_in_a_name_is_stored_as_written(
    inventory: Api, inventory_db: Engine, value: str
) -> None:
    before = rows(inventory_db, "products")
    body = {"sku": f"INJ-{uuid.uuid4().hex[:10].upper()}", "name": value, "price": "1.00"}
    created = inventory.created("/api/v1/products", body)
    assert inventory.get(f"/api/v1/products/{created['id']}").json()["name"] == value
    assert rows(inventory_db, "products") == before + 1


PATH_IDS = {
    "sql": "1' OR '1'='1",
    "dot-dot": "%2e%2e",
    "nul": "%00",
    "lone-surrogate-as-utf8": "%ED%A0%80",
    "not-utf8": "%FF%FE",
}


def id_operations() -> list[tuple[str, str, str]]:
    """(service, method, path template) of every operation with a path parameter."""
    return [
        (service, operation.method, operation.path)
        for service, operation in all_operations()
        if any(p.location == "path" for p in operation.parameters)
    ]


@pytest.mark.parametrize("case", sorted(PATH_IDS))
@pytest.mark.parametrize(
    ("service", "method", "template"),
    id_operations(),
    ids=[f"{s}.{m}{t}" for s, m, t in id_operations()],
)
def test_a_malformed_id_in_a_path_is_a_400(
    clients: Mapping[str, Api], service: str, method: str, template: str, case: str
) -> None:
    path = re.sub(r"\{[^}]+\}", PATH_IDS[case], template)
    response = clients[service](method, path)
    refusal(response, 400)


# Each would name another resource, which the super-admin may read, once its dots were resolved.
TRAVERSALS = {
    b"/api/v1/auth/../users": 404,
    b"/api/v1/auth/..%2fusers": 404,
    b"/api/v1/auth/../../.well-known/jwks.json": 404,
    b"/api/v1/users/%2e%2e": 400,
    b"/api/v1/users/..%5c..%5croles": 400,
}


@pytest.mark.parametrize("path", sorted(TRAVERSALS), ids=[p.decode() for p in sorted(TRAVERSALS)])
def test_path_traversal_reaches_no_other_resource(
    auth_app: ServiceProcess, root_token: str, path: bytes
) -> None:
    """Sent as written (a client would resolve the dot segments itself): a path nothing
    matches (404) or an id that is no id (400)."""
    answer = send_raw(
        auth_app.url,
        b"GET "
        + path
        + b" HTTP/1.1\r\nHost: auth\r\nAuthorization: Bearer "
        + root_token.encode()
        + b"\r\nConnection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    status = TRAVERSALS[path]
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer
    problem = json.loads(body)
    assert (problem["type"], problem["status"]) == ("about:blank", status)


# --- NUL bytes and lone surrogates ----------------------------------------------------------

TEXT_FIELDS = [
    ("inventory", "/api/v1/products", {"sku": "NUL-PROBE-1", "price": "1.00"}, "name"),
    (
        "inventory",
        "/api/v1/products",
        {"sku": "NUL-PROBE-2", "name": "x", "price": "1.00"},
        "description",
    ),
    ("inventory", "/api/v1/categories", {}, "name"),
    ("inventory", "/api/v1/warehouses", {"code": "NULPROBE"}, "name"),
    (
        "auth",
        "/api/v1/users",
        {"email": "nul-probe@example.com", "password": "S3cure-passw0rd"},
        "name",
    ),
    ("auth", "/api/v1/api-keys", {"permissions": ["inventory.stock.view"]}, "name"),
    (
        "auth",
        "/api/v1/roles",
        {"slug": "nul-probe", "permissions": ["inventory.stock.view"]},
        "name",
    ),
]
BAD_TEXT = {"nul": "a\u0000b", "lone-high-surrogate": "a\ud800b", "lone-low-surrogate": "\udfff"}


@pytest.mark.parametrize("case", sorted(BAD_TEXT))
@pytest.mark.parametrize(
    ("service", "path", "rest", "field"),
    TEXT_FIELDS,
    ids=[f"{s}{p}.{f}" for s, p, _, f in TEXT_FIELDS],
)
def test_nul_bytes_and_lone_surrogates_in_a_body_are_a_400(
    inventory: Api,
    auth: Api,
    inventory_db: Engine,
    auth_db: Engine,
    service: str,
    path: str,
    rest: dict[str, Any],
    field: str,
    case: str,
) -> None:
    api, engine = (inventory, inventory_db) if service == "inventory" else (auth, auth_db)
    table = path.rsplit("/", 1)[-1].replace("-", "_")
    before = rows(engine, table)
    # json.dumps writes a lone surrogate as the escape a client would send.
    body = json.dumps({**rest, field: BAD_TEXT[case]}).encode()
    response = api.post(path, content=body, headers={"Content-Type": "application/json"})
    refusal(response, 400)
    assert rows(engine, table) == before


# --- CR/LF in header values -----------------------------------------------------------------

CONTROL_HEADERS = {
    "bare-cr": b"X-Request-ID: probe\rInjected: yes",
    "bare-lf": b"X-Request-ID: probe\nInjected: yes",
    "nul": b"X-Request-ID: pro\x00be",
    "cr-in-authorization": b"Authorization: Bearer abc\rInjected: yes",
}


@pytest.mark.parametrize("case", sorted(CONTROL_HEADERS))
def test_control_characters_in_a_header_value_end_the_request(
    inventory_app: ServiceProcess, case: str
) -> None:
    """Refused by the HTTP server before the app (uvicorn's parser: a plain-text 400, the
    connection closed); nothing of the value comes back as a header."""
    answer = send_raw(
        inventory_app.url,
        b"GET /api/v1/stock HTTP/1.1\r\nHost: inventory\r\n"
        + CONTROL_HEADERS[case]
        + b"\r\nConnection: close\r\n\r\n",
    )
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 400 "), answer
    assert b"injected" not in head
    assert b"probe" not in head


@pytest.mark.parametrize(
    "value",
    ["probe%0d%0aSet-Cookie: stolen=1", "probe\u2028Set-Cookie", "a" * 129, "with space", ""],
)
def test_a_request_id_that_could_split_a_response_is_not_echoed(inventory: Api, value: str) -> None:
    sent = value.encode("utf-8")
    response = inventory.get("/api/v1/products", headers={"X-Request-ID": sent})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"].encode("latin-1") != sent
    uuid.UUID(response.headers["x-request-id"])  # a fresh one instead
    assert "set-cookie" not in response.headers


def test_encoded_crlf_in_a_query_adds_no_header(inventory: Api) -> None:
    response = inventory.get("/api/v1/products?search=a%0D%0ASet-Cookie:%20stolen=1")
    assert response.status_code == 200, response.text
    assert "set-cookie" not in response.headers


# --- forged keyset cursors ------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def positions(value: object) -> str:
    """A cursor naming `value` under every name a keyset may use."""
    return b64(json.dumps({"id": value, "seq": value}).encode())


FORGED_CURSORS = {
    "not-base64": "!!!not*base64!!!",
    "not-json": b64(b"\xff\xfenot json"),
    "json-array": b64(b"[1, 2]"),
    "json-null": b64(b"null"),
    "wrong-key": b64(json.dumps({"offset": 10}).encode()),
    "beyond-bigint": positions(2**63),
    "far-beyond-bigint": positions(10**40),
    "zero": positions(0),
    "negative": positions(-1),
    "float": positions(1.5),
    "boolean": positions(True),
    "numeric-string": positions("18"),
    "sql": positions("1 OR 1=1"),
    "nested": positions({"$gt": 0}),
}


def cursor_operations() -> list[tuple[str, str]]:
    found = [
        (service, concrete_path(service, operation))
        for service, operation in all_operations()
        if any(p.wire_name == "cursor" for p in operation.parameters)
    ]
    assert found, "no keyset-paged operation left?"
    return found


@pytest.mark.parametrize("case", sorted(FORGED_CURSORS))
@pytest.mark.parametrize(
    ("service", "path"), cursor_operations(), ids=[p for _, p in cursor_operations()]
)
def test_a_forged_cursor_is_a_400(
    inventory: Api, auth: Api, service: str, path: str, case: str
) -> None:
    api = inventory if service == "inventory" else auth
    response = api.get(path, params={"cursor": FORGED_CURSORS[case]})
    assert refusal(response, 400)["errors"] == [{"field": "cursor", "message": "invalid cursor"}]

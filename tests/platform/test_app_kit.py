"""The app end to end, in process: the fixture service (fixtures/kit.yaml, its generated
`kit_operations`/`kit_models`, the `kit_handlers` in the v2 shape) on a SQLite database,
fakeredis and a JWKS stand-in, driven through starlette's TestClient — no servers.

Each test states one promise of the kit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from anyio.from_thread import BlockingPortal
from sqlalchemy import func, select
from sqlmodel import col
from starlette.testclient import TestClient
from starlette.types import Message

from services.platform.core import scope as requestctx
from services.platform.core.ids import api_key_digest
from services.platform.core.logs import JsonFormatter, configure_logging
from services.platform.core.scope import Principal
from services.platform.http.idempotency import REPLAYED_HEADER
from services.platform.http.security import PublishedApiKey
from services.platform.persistence.redis import Keys
from services.platform.runtime import authentication, health
from services.platform.runtime.app import MissingHandlersError, ServiceApp, create_app
from services.platform.runtime.service import ServiceContext
from tests.platform.fixtures import support
from tests.platform.fixtures.kit_handlers import COMMITTED, GATES, KNOWN, Gate
from tests.platform.fixtures.kit_tables import ThingRow
from tests.support.problems import problem as assert_problem
from tests.support.processes import ServerThread

THING = f"/api/v1/things/{KNOWN}"
THINGS = "/api/v1/things"
VALID_THING = {
    "name": "lamp",
    "email": "maria@example.com",
    "owner_id": str(uuid.uuid4()),
    "due_at": "2025-01-15T12:00:00.123Z",
    "on": "2024-02-29",
    "count": 2**31 - 1,
    "serial": -(2**63),
    "tags": ["a"],
}


@pytest.fixture(scope="module")
def key() -> support.SigningKey:
    return support.SigningKey.generate("kit-1")


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kit") / "kit.db"


@pytest.fixture(scope="module")
def service(key: support.SigningKey) -> support.FakeService:
    return support.FakeService(support.JwksEndpoint(key))


def make_app(
    service: support.FakeService,
    database: Path,
    *,
    definition: dict[str, Any] | None = None,
    **settings: Any,
) -> ServiceApp:
    kit_definition = support.definition(**(definition or {}))
    kit_settings = support.settings(database, **settings)
    lifespan = service.lifespan(kit_definition, kit_settings)
    return create_app(kit_definition, kit_settings, lifespan=lifespan, spec=support.SPEC)


@pytest.fixture(scope="module")
def app(service: support.FakeService, database: Path) -> ServiceApp:
    return make_app(service, database)


@pytest.fixture(scope="module")
def client(app: ServiceApp) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def healthy(service: support.FakeService) -> None:
    service.database.up = service.bus.up = True
    service.database.hang = False
    service.redis_server.connected = True


def bearer(key: support.SigningKey, *permissions: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.token(permissions=permissions, **claims)}"}


def problem(response: Any, status: int) -> dict[str, Any]:
    body = assert_problem(response, status)
    assert response.headers["content-type"] == "application/problem+json"
    assert body["type"] == "about:blank"
    assert body["instance"] == response.request.url.path
    return body


def fields(body: dict[str, Any]) -> dict[str, str]:
    listed = [error["field"] for error in body["errors"]]
    assert len(listed) == len(set(listed)), f"a field is listed twice: {listed}"
    return {error["field"]: error["message"] for error in body["errors"]}


def portal(client: TestClient) -> BlockingPortal:
    """The event loop thread of a running (entered) TestClient."""
    assert client.portal is not None, "use the client inside `with TestClient(app)`"
    return client.portal


def context(client: TestClient) -> ServiceContext:
    """The context of the service the client's app runs (other apps may have run since)."""
    app = client.app
    assert isinstance(app, ServiceApp)
    assert app.state.context is not None, "use the client inside `with TestClient(app)`"
    return app.state.context


def rows_named(client: TestClient, name: str) -> int:
    """How many things called `name` the database holds (read in a session of its own)."""
    database = context(client).database

    async def count() -> int:
        async with database.session() as session:
            found = await session.scalar(
                select(func.count()).select_from(ThingRow).where(col(ThingRow.name) == name)
            )
        return int(found or 0)

    return portal(client).call(count)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- the published document ----------------------------------------------------------------


def test_the_served_spec_is_the_bundled_document_byte_for_byte(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == support.SPEC.read_bytes()  # $refs intact, nothing injected


def test_swagger_ui_points_at_the_spec(client: TestClient) -> None:
    response = client.get("/ui/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/openapi.json" in response.text
    assert response.headers["x-request-id"]  # the kit's ids, on what it delegates too
    # Titled after the service (several tabs of docs), its length what it now is.
    assert "<title>Kit test service — API docs</title>" in response.text
    assert "Swagger UI</title>" not in response.text
    assert int(response.headers["content-length"]) == len(response.content)


def test_swagger_ui_files_are_not_sniffed_and_unknown_ones_are_a_404(client: TestClient) -> None:
    for path in ("/ui/", "/ui/swagger-ui.css"):
        assert client.get(path).headers["x-content-type-options"] == "nosniff"
    for method, path in (("GET", "/ui/x"), ("GET", "/ui/.env"), ("POST", "/ui/swagger-ui.css")):
        response = client.request(method, path)
        assert response.status_code in (404, 405), (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_swagger_ui_keeps_the_authorization_across_reloads(client: TestClient) -> None:
    assert "swagger-ui-config.json" in client.get("/ui/").text
    config = client.get("/ui/swagger-ui-config.json")
    assert config.status_code == 200
    assert config.json()["persistAuthorization"] is True


def test_the_root_leads_to_the_docs(client: TestClient) -> None:
    for method in ("GET", "HEAD"):
        response = client.request(method, "/", follow_redirects=False)
        assert response.status_code == 307
        assert response.headers["location"] == "/ui/"
    assert client.get("/").url.path == "/ui/"
    assert_problem(client.post("/"), 404)  # only reads are redirected


def test_a_missing_handler_fails_at_build_time_naming_all_of_them() -> None:
    definition = support.definition(handlers="tests.platform.fixtures.kit_tables")
    with pytest.raises(MissingHandlersError) as raised:
        create_app(definition, support.settings(), spec=support.SPEC)
    missing = {item.split()[0] for item in raised.value.missing}
    assert missing == {
        "list_things",
        "create_thing",
        "get_thing",
        "delete_thing",
        "archive_thing",
        "get_thing_label",
        "list_my_things",
        "whoami",
        "boom",
        "broken",
    }  # the operational ones resolve to the kit
    assert "whoami (GET /api/v1/whoami)" in str(raised.value)
    assert "tests.platform.fixtures.kit_tables lacks a handler for 10 operation(s)" in str(
        raised.value
    )


# --- request validation -----------------------------------------------------------------------


def test_a_bad_uuid_in_the_path_is_a_400_not_a_500(client: TestClient) -> None:
    body = problem(client.get("/api/v1/things/not-a-uuid"), 400)
    assert fields(body) == {"thing_id": "must be a UUID"}


def test_every_bad_field_of_a_body_is_reported_once(client: TestClient) -> None:
    bad = {
        "name": "",
        "email": "no-at-sign",
        "owner_id": "123",
        "due_at": "2025-01-15T12:00:00",  # RFC 3339 needs a time zone
        "on": "2025-02-30",
        "count": 2**31,  # int32
        "serial": 2**63,  # int64
        "tags": ["ok", ""],
        "surprise": True,
    }
    body = problem(client.post(THINGS, json=bad), 400)
    assert set(fields(body)) == {
        "name",
        "email",
        "owner_id",
        "due_at",
        "on",
        "count",
        "serial",
        "tags.1",
        "surprise",
    }
    assert fields(body)["surprise"] == "is not allowed"
    assert body["detail"] == "The request has 9 invalid fields; see errors."


def test_missing_required_fields_are_named(client: TestClient) -> None:
    body = problem(client.post(THINGS, json={}), 400)
    assert fields(body) == {"name": "is required", "email": "is required"}


def test_a_valid_body_with_every_format_passes(client: TestClient) -> None:
    response = client.post(THINGS, json={**VALID_THING, "name": unique("formats")})
    assert response.status_code == 201, response.text
    edges = {"count": -(2**31), "serial": 2**63 - 1, "due_at": "2024-12-31T23:59:59+01:00"}
    response = client.post(THINGS, json={**VALID_THING, **edges, "name": unique("edges")})
    assert response.status_code == 201, response.text


def test_nul_characters_are_refused_in_bodies_and_parameters(
    client: TestClient, key: support.SigningKey
) -> None:
    # PostgreSQL text cannot hold U+0000: the bundle gives every free-text string NO_NUL.
    body = problem(client.post(THINGS, json={**VALID_THING, "name": "la\u0000mp"}), 400)
    assert set(fields(body)) == {"name"}
    headers = bearer(key, "kit.things.view")
    assert set(fields(problem(client.get(f"{THINGS}?q=a%00b", headers=headers), 400))) == {"q"}
    assert client.get(f"{THINGS}?q=ab", headers=headers).json()["data"][0]["name"] == "ab"


@pytest.mark.parametrize(
    "content",
    [
        b'{"name": "\xff\xfe", "email": "a@b.co"}',  # not UTF-8
        b'{"name": "lamp", ',  # truncated
        b'{"name": "lamp", "email": "a@b.co", "count": NaN}',
        b'{"name": "lamp", "email": "a@b.co", "count": Infinity}',
        b'{"name": "lamp", "email": "a@b.co", "count": -Infinity}',
        b'{"name": "lamp", "email": "a@b.co", "count": 1e999}',
        b"[" * 100_000,  # nested beyond the recursion limit
        b'{"name": "\\ud800", "email": "a@b.co"}',  # a lone surrogate: no UTF-8 text holds it
        b'{"name": "lamp", "email": "a@b.co", "tags": ["\\udfff"]}',
        b'{"\\udbff": 1, "name": "lamp", "email": "a@b.co"}',
    ],
)
def test_a_body_that_is_not_json_is_a_400(client: TestClient, content: bytes) -> None:
    response = client.post(THINGS, content=content, headers={"content-type": "application/json"})
    assert fields(problem(response, 400)).keys() == {"body"}


def test_a_surrogate_pair_escape_is_a_character_not_an_error(client: TestClient) -> None:
    name = unique("pair") + "\\ud83d\\ude00"  # 😀 written as its UTF-16 pair
    content = json.dumps({**VALID_THING, "name": "NAME"}).replace("NAME", name).encode()
    response = client.post(THINGS, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["name"].endswith("\U0001f600")


def test_every_response_says_nosniff(client: TestClient) -> None:
    for response in (client.get("/health/live"), client.get("/nowhere"), client.get(THING)):
        assert response.headers["x-content-type-options"] == "nosniff"


def test_only_public_reads_may_be_kept_by_caches(
    client: TestClient, key: support.SigningKey
) -> None:
    public_read = client.get(THING)
    assert public_read.status_code == 200
    assert "cache-control" not in public_read.headers
    # A caller's data, a write (login answers tokens), and their errors: never stored.
    for response in (
        client.get(THINGS, headers=bearer(key, "kit.things.view")),
        client.get(THINGS),  # 401
        client.post(THINGS, json={**VALID_THING, "name": unique("nostore")}),
        client.post(THINGS, json={}),  # 400
    ):
        assert response.headers["cache-control"] == "no-store", response.status_code


def test_the_server_names_no_stack(service: support.FakeService, database: Path) -> None:
    with ServerThread(make_app(service, database)).start() as server:
        response = httpx.get(f"{server.url}/health/live", timeout=5)
    assert response.status_code == 200
    assert "server" not in response.headers


def test_json_is_utf_8_whatever_charset_the_content_type_names(client: TestClient) -> None:
    response = client.post(
        THINGS,
        content=json.dumps({**VALID_THING, "name": unique("charset")}).encode(),
        headers={"content-type": "application/json; charset=no-such-codec"},
    )
    assert response.status_code == 201, response.text


def test_a_missing_body_is_a_400(client: TestClient) -> None:
    response = client.post(THINGS, headers={"content-type": "application/json"})
    assert fields(problem(response, 400)) == {"body": "The request body is required."}


def test_a_body_that_is_not_json_media_is_a_415(client: TestClient) -> None:
    response = client.post(THINGS, content=b"name,email", headers={"content-type": "text/csv"})
    assert problem(response, 415)["detail"] == "The body must be application/json, not text/csv."


def test_unknown_and_mistyped_query_parameters_are_400s(
    client: TestClient, key: support.SigningKey
) -> None:
    headers = bearer(key, "kit.things.view")
    response = client.get(f"{THINGS}?page=zero&per_page=500&debug=1", headers=headers)
    assert fields(problem(response, 400)) == {
        "page": "must be an integer",
        "per_page": "must be at most 100",
        "debug": "is not a parameter of this operation",
    }
    listed = client.get(f"{THINGS}?page=2", headers=headers).json()
    assert (listed["page"], listed["per_page"]) == (2, 15)  # coerced, and the default filled


def test_a_body_over_one_mebibyte_is_a_413(client: TestClient) -> None:
    big = json.dumps({**VALID_THING, "name": "x" * (1 << 20)}).encode()
    declared = client.post(THINGS, content=big, headers={"content-type": "application/json"})
    assert problem(declared, 413)["detail"] == "The body is larger than 1048576 bytes."

    def chunks() -> Iterator[bytes]:
        yield big  # a generator: sent chunked, without Content-Length

    streamed = client.post(THINGS, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    problem(streamed, 413)


def test_the_body_limit_comes_from_the_settings(
    service: support.FakeService, database: Path
) -> None:
    with TestClient(make_app(service, database, max_body_bytes=64)) as small:
        response = small.post(THINGS, json=VALID_THING)
    assert problem(response, 413)["detail"] == "The body is larger than 64 bytes."


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(
    client: TestClient, app: ServiceApp
) -> None:
    # Straight through ASGI: 64 KiB chunks, no Content-Length; the app stops reading at 1 MiB.
    chunk, count = b" " * (64 << 10), 40
    received: list[int] = []
    sent: list[Message] = []

    async def receive() -> Message:
        received.append(1)
        return {"type": "http.request", "body": chunk, "more_body": len(received) < count}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": THINGS,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
    }
    portal(client).call(app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert len(received) == 17  # 16 chunks are exactly 1 MiB; the 17th is one too many


# --- routing ------------------------------------------------------------------------------------


def test_an_unknown_route_is_a_404_problem(client: TestClient) -> None:
    problem(client.get("/api/v1/nowhere"), 404)


def test_a_trailing_slash_is_another_path(client: TestClient) -> None:
    problem(client.get(f"{THING}/"), 404)  # no redirect built from the Host header


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    response = client.put(THING)
    problem(response, 405)
    assert response.headers["allow"] == "DELETE, GET, HEAD"


def test_a_405_on_a_literal_path_lists_its_own_methods(client: TestClient) -> None:
    response = client.post("/api/v1/things/mine")
    problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"


def test_a_concrete_path_wins_over_a_template_listed_before_it(
    client: TestClient, key: support.SigningKey
) -> None:
    # The spec lists /things/{thing_id} first; OpenAPI still routes /things/mine to itself.
    mine = client.get("/api/v1/things/mine", headers=bearer(key))
    assert mine.status_code == 200, mine.text
    # DELETE exists on the template only: for /things/mine it is a 405, not a bad thing_id.
    response = client.delete("/api/v1/things/mine", headers=bearer(key, "kit.things.delete"))
    problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"


def test_head_is_get_without_the_body(client: TestClient) -> None:
    got, head = client.get(THING), client.head(THING)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert (head.headers["content-type"], head.headers["etag"]) == ("application/json", '"3"')


# --- responses ---------------------------------------------------------------------------------


def test_a_model_is_sent_in_json_mode_by_alias_with_its_etag(client: TestClient) -> None:
    response = client.get(THING)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["etag"] == '"3"'  # the spec declares ETag: from `version`
    assert response.json() == {  # `class_` by its alias, the MISSING note left out
        "id": str(KNOWN),
        "name": "lamp",
        "price": "12.50",
        "class": "lamp",
        "created_at": "2025-01-15T00:00:00Z",
        "version": 3,
    }


def test_a_created_resource_has_its_location_and_etag(client: TestClient) -> None:
    created = client.post(THINGS, json={**VALID_THING, "name": unique("located")})
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/api/v1/things/{body['id']}"
    assert created.headers["etag"] == '"1"'
    found = client.get(created.headers["location"])
    assert found.status_code == 200, found.text
    assert (found.json(), found.headers["etag"]) == (body, '"1"')


def test_none_is_a_204_without_a_body(client: TestClient, key: support.SigningKey) -> None:
    deleted = client.delete(THING, headers=bearer(key, "kit.things.view", "kit.things.delete"))
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert "content-type" not in deleted.headers


def test_a_reply_overrides_the_status_and_adds_headers(client: TestClient) -> None:
    response = client.post(f"{THING}/archive")
    assert response.status_code == 202  # the spec's success is 200
    assert response.headers["x-archived"] == "later"
    assert response.headers["etag"] == '"3"'
    assert response.json()["id"] == str(KNOWN)


def test_bytes_are_sent_with_the_media_type_the_spec_declares(client: TestClient) -> None:
    response = client.get(f"{THING}/label")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content == f"id,name\r\n{KNOWN},lamp\r\n".encode()
    # A Reply that names no media type gets the declared one too, with its own headers.
    download = client.get(f"{THING}/label", params={"download": "true"})
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == 'attachment; filename="label.csv"'
    assert download.content == response.content


def test_a_handler_problem_is_rendered(client: TestClient) -> None:
    body = problem(client.get(f"/api/v1/things/{uuid.uuid4()}"), 404)
    assert body["detail"].startswith("Thing ")


def test_an_unexpected_error_is_a_500_problem_that_leaks_nothing(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/boom")
    body = problem(response, 500)
    assert (
        body["detail"] == "An unexpected error occurred; the request id identifies it in the logs."
    )
    assert "hunter2" not in response.text
    assert "db.internal" not in response.text
    logged = [record for record in caplog.records if record.exc_info]
    assert logged, "the error must be logged with its traceback"
    assert logged[0].getMessage() == "unhandled error in GET /api/v1/boom"


def test_a_response_outside_the_contract_is_a_logged_500(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/broken")
    body = problem(response, 500)
    assert "12.505" not in response.text  # the schema details are for the log only
    assert body["detail"] == "The server produced a response outside its contract."
    (record,) = [r for r in caplog.records if "breaks the contract" in r.getMessage()]
    assert "GET /api/v1/broken" in record.getMessage()
    assert "price" in record.getMessage()


def test_without_response_validation_a_response_passes_through(
    service: support.FakeService, database: Path
) -> None:
    with TestClient(make_app(service, database, validate_responses=False)) as unchecked:
        response = unchecked.get("/api/v1/broken")
    assert response.status_code == 200
    assert response.json()["price"] == "12.505"


# --- the unit of work ----------------------------------------------------------------------------


def test_a_write_is_committed_once_the_handler_returns(client: TestClient) -> None:
    name = unique("committed")
    response = client.post(THINGS, json={**VALID_THING, "name": name})
    assert response.status_code == 201, response.text
    assert rows_named(client, name) == 1  # visible to another session
    assert name in COMMITTED  # its after-commit callback ran


@pytest.mark.parametrize(("prefix", "status"), [("refuse", 409), ("explode", 500)])
def test_a_write_is_rolled_back_when_the_handler_raises(
    client: TestClient, prefix: str, status: int
) -> None:
    name = unique(prefix)  # the handler writes the row, flushes it, then raises
    problem(client.post(THINGS, json={**VALID_THING, "name": name}), status)
    assert rows_named(client, name) == 0
    assert name not in COMMITTED  # no after-commit callback after a rollback


# --- Idempotency-Key ----------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_first_response(client: TestClient) -> None:
    key, name = str(uuid.uuid4()), unique("idem")
    body = {**VALID_THING, "name": name}
    first = client.post(THINGS, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    assert REPLAYED_HEADER.lower() not in first.headers
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    again = client.post(
        THINGS,
        content=reordered,
        headers={"Idempotency-Key": key, "content-type": "application/json"},
    )
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers[REPLAYED_HEADER] == "true"
    for header in ("location", "etag", "content-type"):
        assert again.headers[header] == first.headers[header]
    assert again.headers["x-request-id"] != first.headers["x-request-id"]  # its own ids
    assert rows_named(client, name) == 1  # the handler ran once


def test_the_same_key_with_another_body_is_a_422(client: TestClient) -> None:
    key, name = str(uuid.uuid4()), unique("idem")
    headers = {"Idempotency-Key": key}
    assert client.post(THINGS, json={**VALID_THING, "name": name}, headers=headers).is_success
    other = client.post(THINGS, json={**VALID_THING, "name": f"{name}-2"}, headers=headers)
    assert "different request body" in problem(other, 422)["detail"]
    assert rows_named(client, f"{name}-2") == 0


def test_a_retry_while_the_first_request_runs_is_a_409(client: TestClient) -> None:
    key, name = str(uuid.uuid4()), unique("slow")
    body, headers = {**VALID_THING, "name": name}, {"Idempotency-Key": key}
    GATES[name] = gate = Gate()
    outcome: list[Any] = []
    first = threading.Thread(
        target=lambda: outcome.append(client.post(THINGS, json=body, headers=headers))
    )
    first.start()
    try:
        assert gate.entered.wait(5), "the first request never reached its handler"
        retry = client.post(THINGS, json=body, headers=headers)
        assert problem(retry, 409)["detail"].startswith("A request with this Idempotency-Key")
        assert retry.headers["retry-after"] == "1"
    finally:
        gate.released.set()
        first.join(10)
        del GATES[name]
    assert outcome[0].status_code == 201
    replayed = client.post(THINGS, json=body, headers=headers)
    assert replayed.headers[REPLAYED_HEADER] == "true"
    assert rows_named(client, name) == 1


def test_a_failed_request_does_not_use_up_its_key(client: TestClient) -> None:
    key, name = str(uuid.uuid4()), unique("refuse")
    body, headers = {**VALID_THING, "name": name}, {"Idempotency-Key": key}
    for _ in range(2):  # run again (not replayed, not "in flight"): the claim was released
        assert (
            "refused after it was written"
            in problem(client.post(THINGS, json=body, headers=headers), 409)["detail"]
        )


def test_an_idempotency_key_must_fit_its_schema(client: TestClient) -> None:
    response = client.post(THINGS, json=VALID_THING, headers={"Idempotency-Key": "k" * 256})
    assert set(fields(problem(response, 400))) == {"Idempotency-Key"}


# --- request and correlation ids ---------------------------------------------------------------


def test_ids_are_created_and_echoed(client: TestClient) -> None:
    response = client.get(THING)
    request_id = response.headers["x-request-id"]
    assert uuid.UUID(request_id)
    assert response.headers["x-correlation-id"] == request_id


def test_incoming_ids_are_kept(client: TestClient) -> None:
    correlation = str(uuid.uuid4())
    response = client.get(THING, headers={"X-Request-ID": "gw-42", "X-Correlation-ID": correlation})
    assert response.headers["x-request-id"] == "gw-42"
    assert response.headers["x-correlation-id"] == correlation


def test_unusable_incoming_ids_are_replaced(client: TestClient) -> None:
    response = client.get(THING, headers={"X-Request-ID": "x" * 500, "X-Correlation-ID": "abc"})
    assert uuid.UUID(response.headers["x-request-id"])
    assert uuid.UUID(response.headers["x-correlation-id"])  # envelopes need a UUID


def test_errors_carry_the_ids_too(client: TestClient) -> None:
    response = client.get("/api/v1/boom", headers={"X-Request-ID": "trace-me"})
    assert response.headers["x-request-id"] == "trace-me"
    assert client.get("/nowhere", headers={"X-Request-ID": "lost"}).headers["x-request-id"] == (
        "lost"
    )


# --- security ----------------------------------------------------------------------------------


def test_no_credentials_is_a_401_with_a_challenge(client: TestClient) -> None:
    response = client.get("/api/v1/whoami")
    problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "claims",
    [
        {"issued_at": 1_000_000_000.0},  # expired long ago
        {"audience": "elsewhere"},
        {"issuer": "evil"},
        {"typ": "refresh"},
    ],
)
def test_an_invalid_or_expired_token_is_a_401(
    client: TestClient, key: support.SigningKey, claims: dict[str, Any]
) -> None:
    response = client.get("/api/v1/whoami", headers=bearer(key, **claims))
    problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer"])
def test_an_authorization_that_is_not_a_bearer_token_is_a_401(
    client: TestClient, authorization: str
) -> None:
    response = client.get("/api/v1/whoami", headers={"Authorization": authorization})
    assert "not a bearer token" in problem(response, 401)["detail"]


def test_a_token_from_an_unknown_key_is_a_401(client: TestClient) -> None:
    stranger = support.SigningKey.generate("stranger")
    problem(client.get("/api/v1/whoami", headers=bearer(stranger)), 401)


def test_a_blacklisted_token_is_a_401(client: TestClient, key: support.SigningKey) -> None:
    jti = str(uuid.uuid4())
    portal(client).call(context(client).redis.set, f"kit:auth:blacklist:{jti}", "1")
    body = problem(client.get("/api/v1/whoami", headers=bearer(key, jti=jti)), 401)
    assert "revoked" in body["detail"]


def test_the_handler_sees_principal_ids_and_context(
    client: TestClient, key: support.SigningKey
) -> None:
    subject = str(uuid.uuid4())
    response = client.get(
        "/api/v1/whoami", headers={**bearer(key, subject=subject), "X-Request-ID": "r-1"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["subject"], body["kind"], body["service"]) == (subject, "user", "kit")
    assert body["request_id"] == "r-1"
    assert body["correlation_id"] == response.headers["x-correlation-id"]


def test_a_missing_permission_is_a_403_naming_it(
    client: TestClient, key: support.SigningKey
) -> None:
    response = client.delete(THING, headers=bearer(key, "kit.things.view"))
    assert problem(response, 403)["detail"] == "Missing permission: kit.things.delete"
    allowed = client.delete(THING, headers=bearer(key, "kit.things.view", "kit.things.delete"))
    assert allowed.status_code == 204


def test_permissions_are_checked_before_the_input(
    client: TestClient, key: support.SigningKey
) -> None:
    problem(client.get(f"{THINGS}?debug=1", headers=bearer(key)), 403)


def publish_api_key(service: support.FakeService, raw: str, *permissions: str) -> Keys:
    published = PublishedApiKey("key-9", permissions, datetime(2100, 1, 1, tzinfo=UTC))
    keys = Keys(support.settings().redis_prefix)
    redis = fakeredis.FakeRedis(server=service.redis_server, decode_responses=True)
    redis.set(keys("auth", "api_key", api_key_digest(raw)), published.dumps())
    return keys


def test_partner_keys_published_in_redis_authenticate_on_any_service(
    client: TestClient, service: support.FakeService
) -> None:
    raw = "erp_published_0123456789"
    keys = publish_api_key(service, raw, "kit.things.view")

    whoami = client.get("/api/v1/whoami", headers={"X-API-Key": raw})

    assert (whoami.json()["subject"], whoami.json()["kind"]) == ("key-9", "api_key")
    redis = fakeredis.FakeRedis(server=service.redis_server, decode_responses=True)
    assert redis.get(keys("auth", "api_key_used", "key-9")) is not None
    problem(client.delete(THING, headers={"X-API-Key": raw}), 403)
    body = problem(client.get("/api/v1/whoami", headers={"X-API-Key": "erp_unknown_0"}), 401)
    assert "invalid or revoked" in body["detail"]


def test_a_bad_second_credential_is_refused_not_ignored(
    client: TestClient, service: support.FakeService, key: support.SigningKey
) -> None:
    raw = "erp_published_second_0123"
    publish_api_key(service, raw, "kit.things.view")
    token = bearer(key)
    both = client.get("/api/v1/whoami", headers={**token, "X-API-Key": raw})
    assert both.json()["kind"] == "user"  # both valid: the token's caller
    bad_key = client.get("/api/v1/whoami", headers={**token, "X-API-Key": "erp_stolen_0"})
    assert "API key" in problem(bad_key, 401)["detail"]
    expired = bearer(key, issued_at=1_000_000_000.0)
    bad_token = client.get("/api/v1/whoami", headers={**expired, "X-API-Key": raw})
    assert "expired" in problem(bad_token, 401)["detail"]


class PartnerKeys:
    async def verify(self, raw_key: str) -> Principal | None:
        if raw_key != "partner-secret":
            return None
        return Principal("key-1", "api_key", frozenset({"kit.things.view"}))


def test_an_api_key_verifier_of_the_service_authenticates_a_partner(
    service: support.FakeService, database: Path
) -> None:
    app = make_app(service, database, definition={"api_keys": lambda ctx: PartnerKeys()})
    with TestClient(app) as partner:
        whoami = partner.get("/api/v1/whoami", headers={"X-API-Key": "partner-secret"})
        assert (whoami.json()["subject"], whoami.json()["kind"]) == ("key-1", "api_key")
        assert partner.get(THINGS, headers={"X-API-Key": "partner-secret"}).is_success
        problem(partner.delete(THING, headers={"X-API-Key": "partner-secret"}), 403)
        problem(partner.get("/api/v1/whoami", headers={"X-API-Key": "stolen"}), 401)


# --- health ------------------------------------------------------------------------------------


def test_health_reports_each_dependency(client: TestClient) -> None:
    # The kit's fake service runs on embedded mode's stand-ins (SQLite, the in-process broker,
    # fakeredis): up, but said to be stand-ins, never `ok` (the real servers: test_api.py).
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["service"], body["version"]) == ("embedded", "kit", "2.1.0")
    assert set(body["checks"]) == {"database", "redis", "rabbitmq"}
    for check in body["checks"].values():
        assert (check["status"], check["error"]) == ("embedded", None)
        assert check["latency_ms"] >= 0
    assert client.get("/health/ready").status_code == 200  # a demo is ready to serve


def test_a_configured_server_is_not_a_stand_in() -> None:
    settings = support.settings()
    assert health.stand_ins(settings) == {"database", "redis", "rabbitmq"}
    real = dataclasses.replace(
        settings,
        database_url="postgresql+psycopg://127.0.0.1/x",
        redis_url="redis://127.0.0.1:6379/0",
        amqp_url=None,
    )
    assert health.stand_ins(real) == {"rabbitmq"}


def test_health_is_503_when_a_dependency_is_down(
    client: TestClient, service: support.FakeService
) -> None:
    service.bus.up = False
    service.redis_server.connected = False
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["rabbitmq"] == {
        "status": "down",
        "latency_ms": None,
        "error": "Connection refused",
    }
    assert body["checks"]["redis"]["status"] == "down"
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").json() == {"status": "ok"}  # liveness checks nothing


def test_a_hanging_dependency_times_out(
    client: TestClient, service: support.FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.05)
    service.database.hang = True
    body = client.get("/health").json()
    assert body["checks"]["database"]["error"] == "no answer within 0.05 s"


def test_readiness_is_503_until_the_service_has_started(
    service: support.FakeService, database: Path
) -> None:
    not_started = TestClient(make_app(service, database))  # not entered: no lifespan yet
    response = not_started.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "service": "kit", "version": "2.1.0", "checks": {}}
    assert not_started.get("/health/live").status_code == 200
    problem(not_started.get(THING), 503)  # a service operation needs the running service
    with not_started:
        assert ready_soon(not_started).status_code == 200
    assert not_started.get("/health/ready").status_code == 503  # stopped again


def ready_soon(client: TestClient, seconds: float = 5) -> Any:
    """/health/ready once it answers 200 (the keys are warmed up in the background)."""
    deadline = time.monotonic() + seconds
    while (response := client.get("/health/ready")).status_code != 200:
        if time.monotonic() > deadline:
            return response
        time.sleep(0.01)
    return response


def test_readiness_is_503_until_the_token_keys_have_loaded(
    key: support.SigningKey, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(authentication, "WARM_UP_DELAYS", (0.01,))
    service = support.FakeService(support.JwksEndpoint(key))
    service.jwks.unreachable = True  # auth is not up yet
    with TestClient(make_app(service, database)) as starting:
        while service.jwks.fetches < 3:  # the warm-up keeps trying
            time.sleep(0.01)
        response = starting.get("/health/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert {check["status"] for check in body["checks"].values()} == {"embedded"}
        assert starting.get("/health").status_code == 200  # dependencies are all up
        assert starting.get("/health/live").status_code == 200

        service.jwks.unreachable = False  # auth comes up
        assert ready_soon(starting).status_code == 200
        whoami = starting.get("/api/v1/whoami", headers=bearer(key))
        assert whoami.status_code == 200, whoami.text


# --- metrics and logs --------------------------------------------------------------------------


def test_metrics_are_labelled_by_route_template(client: TestClient) -> None:
    client.get(THING)
    client.get("/api/v1/things/nope")
    client.get(f"/api/v1/nowhere/{uuid.uuid4()}")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = re.findall(r"^http_requests_total\{(.*)\} ", response.text, re.MULTILINE)
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', sample)) for sample in samples]
    ours = [label for label in labels if label["service"] == "kit"]
    handlers = {(label["handler"], label["status"]) for label in ours}
    assert ("/api/v1/things/{thing_id}", "200") in handlers
    assert ("/api/v1/things/{thing_id}", "400") in handlers
    assert ("none", "404") in handlers
    routes = {"none", *(operation.path for operation in support.definition().operations.values())}
    assert {label["handler"] for label in ours} <= routes  # bounded: templates only
    assert "http_request_duration_seconds_bucket" in response.text


class JsonLines(logging.Handler):
    """Formats each record as it is emitted, in the request's context, as production does."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter("kit"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def access_log() -> Iterator[JsonLines]:
    logger, lines = logging.getLogger("erp.access"), JsonLines()
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


def test_each_request_writes_an_access_log_line(client: TestClient, access_log: JsonLines) -> None:
    correlation = str(uuid.uuid4())
    client.get(THING, headers={"X-Request-ID": "acc-1", "X-Correlation-ID": correlation})
    (line,) = access_log.lines
    assert line["route"] == "/api/v1/things/{thing_id}"
    assert line["path"] == THING
    assert (line["method"], line["status"]) == ("GET", 200)
    assert line["duration_ms"] >= 0
    assert line["message"].startswith(f"GET {THING} 200 ")
    assert (line["service"], line["request_id"], line["correlation_id"]) == (
        "kit",
        "acc-1",
        correlation,
    )


def test_probes_are_logged_at_debug_only(client: TestClient, access_log: JsonLines) -> None:
    client.get("/health/live")
    client.get("/metrics")
    assert access_log.lines == []


def test_json_log_lines_carry_the_request_context() -> None:
    record = logging.LogRecord(
        "services.kit", logging.WARNING, __file__, 1, "hi %s", ("you",), None
    )
    record.order_id = "o-1"
    with requestctx.bind(request="r-9", correlation="c-9"):
        line = json.loads(JsonFormatter("kit").format(record))
    assert line["message"] == "hi you"
    assert (line["level"], line["logger"], line["service"]) == ("WARNING", "services.kit", "kit")
    assert (line["request_id"], line["correlation_id"]) == ("r-9", "c-9")
    assert line["order_id"] == "o-1"
    assert line["timestamp"].endswith("Z")


def test_configure_logging_installs_one_json_handler() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging("kit", "debug")
        configure_logging("kit", "debug")  # idempotent
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.DEBUG
        assert logging.getLogger("uvicorn.access").disabled
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("uvicorn.access").disabled = False

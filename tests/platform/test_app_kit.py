"""The app factory end to end, in process: a throwaway spec (fixtures/kit.openapi.json), its
handlers, a fake ServiceContext and connexion's test client — no servers.

Each test states one fix of a connexion pitfall or one promise of the kit.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest
from starlette.testclient import TestClient

from services.platform.core import scope as requestctx
from services.platform.core.ids import api_key_digest
from services.platform.core.logs import JsonFormatter, configure_logging
from services.platform.core.scope import Principal
from services.platform.http.security import PublishedApiKey
from services.platform.persistence.redis import Keys
from services.platform.runtime import authentication, health
from services.platform.runtime.app import MissingHandlersError, create_app
from tests.platform.fixtures import support
from tests.platform.fixtures.kit_handlers import KNOWN
from tests.support.problems import problem as assert_problem

THING = f"/api/v1/things/{KNOWN}"
VALID_THING = {
    "name": "lamp",
    "email": "maria@example.com",
    "owner_id": str(uuid.uuid4()),
    "due_at": "2025-01-15T12:00:00.123Z",
    "on": "2024-02-29",
    "count": 2**31 - 1,
    "tags": ["a"],
}


@pytest.fixture(scope="module")
def key() -> support.SigningKey:
    return support.SigningKey.generate("kit-1")


@pytest.fixture(scope="module")
def service(key: support.SigningKey) -> support.FakeService:
    return support.FakeService(support.JwksEndpoint(key))


@pytest.fixture(scope="module")
def client(service: support.FakeService) -> Iterator[TestClient]:
    definition, settings = support.definition(), support.settings()
    app = create_app(
        definition, settings, lifespan=service.lifespan(definition, settings), spec=support.SPEC
    )
    with app.test_client() as test_client:
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
    return {error["field"]: error["message"] for error in body["errors"]}


# --- the published document ----------------------------------------------------------------


def test_the_served_spec_is_the_bundled_document_byte_for_byte(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == support.SPEC.read_bytes()  # $refs intact, nothing injected


def test_swagger_ui_points_at_the_spec(client: TestClient) -> None:
    response = client.get("/ui/")
    assert response.status_code == 200
    assert "/openapi.json" in response.text


def test_a_missing_handler_fails_at_build_time_naming_all_of_them() -> None:
    definition = support.definition(handlers="tests.platform.fixtures.support")
    with pytest.raises(MissingHandlersError) as raised:
        create_app(definition, support.settings(), spec=support.SPEC)
    missing = {item.split()[0] for item in raised.value.missing}
    assert missing == {
        "list_things",
        "create_thing",
        "list_my_things",
        "get_thing",
        "delete_thing",
        "whoami",
        "boom",
        "bare",
        "broken",
    }  # the operational ones resolve to the kit
    assert "GET /api/v1/whoami" in str(raised.value)


# --- request validation -----------------------------------------------------------------------


def test_a_bad_uuid_in_the_path_is_a_400_not_a_500(client: TestClient) -> None:
    body = problem(client.get("/api/v1/things/not-a-uuid"), 400)
    assert fields(body) == {"thing_id": "'not-a-uuid' is not a 'uuid'"}


def test_every_bad_field_of_a_body_is_reported(client: TestClient) -> None:
    bad = {
        "name": "",
        "email": "no-at-sign",
        "owner_id": "123",
        "due_at": "2025-01-15T12:00:00",  # RFC 3339 needs a time zone
        "on": "2025-02-30",
        "count": 2**31,
        "tags": ["ok", ""],
        "surprise": True,
    }
    body = problem(client.post("/api/v1/things", json=bad), 400)
    assert set(fields(body)) == {
        "name",
        "email",
        "owner_id",
        "due_at",
        "on",
        "count",
        "tags.1",
        "surprise",
    }
    assert fields(body)["surprise"] == "is not allowed"


def test_missing_required_fields_are_named(client: TestClient) -> None:
    body = problem(client.post("/api/v1/things", json={}), 400)
    assert fields(body) == {"name": "is required", "email": "is required"}


def test_a_valid_body_with_every_format_passes(client: TestClient) -> None:
    response = client.post("/api/v1/things", json=VALID_THING)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"name": "\xff\xfe"}', "application/json"),  # not UTF-8
        (b'{"name": "lamp", ', "application/json"),  # truncated
        (b'{"name": "lamp", "email": "a@b.co", "count": NaN}', "application/json"),
        (b'{"name": "lamp", "email": "a@b.co", "count": 1e999}', "application/json"),
        (b"[" * 100_000, "application/json"),  # nested beyond the recursion limit
        (b'{"name": "lamp"}', "application/json;charset=no-such-codec"),
    ],
)
def test_a_body_that_is_not_json_is_a_400(
    client: TestClient, content: bytes, content_type: str
) -> None:
    response = client.post(
        "/api/v1/things", content=content, headers={"content-type": content_type}
    )
    assert fields(problem(response, 400)).keys() == {"body"}


def test_a_missing_body_is_a_400(client: TestClient) -> None:
    response = client.post("/api/v1/things", headers={"content-type": "application/json"})
    assert fields(problem(response, 400)) == {"body": "RequestBody is required"}


def test_unknown_and_mistyped_query_parameters_are_400s(
    client: TestClient, key: support.SigningKey
) -> None:
    headers = bearer(key, "kit.things.view")
    response = client.get("/api/v1/things?page=zero&per_page=500&debug=1", headers=headers)
    assert set(fields(problem(response, 400))) == {"page", "per_page", "debug"}
    assert client.get("/api/v1/things?page=2", headers=headers).json()["page"] == 2


# --- routing errors ----------------------------------------------------------------------------


def test_an_unknown_route_is_a_404_problem(client: TestClient) -> None:
    problem(client.get("/api/v1/nowhere"), 404)


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
    # The fixture lists /things/{thing_id} first; OpenAPI still routes /things/mine to itself.
    mine = client.get("/api/v1/things/mine", headers=bearer(key))
    assert mine.status_code == 200, mine.text
    # DELETE exists on the template only: for /things/mine it is a 405, not a bad thing_id.
    response = client.delete("/api/v1/things/mine", headers=bearer(key, "kit.things.delete"))
    problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"


# --- responses ---------------------------------------------------------------------------------


def test_reply_dumps_models_in_json_mode_by_alias(client: TestClient) -> None:
    response = client.get(THING)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {  # Decimal as a string, alias used, MISSING left out
        "id": str(KNOWN),
        "name": "lamp",
        "price": "12.50",
        "created_at": "2025-01-15T00:00:00Z",
    }


def test_a_handler_returning_a_bare_model_is_json_not_a_500(client: TestClient) -> None:
    # The operation declares application/json and application/problem+json (issue #1956).
    response = client.get("/api/v1/bare")
    assert response.status_code == 200
    assert response.json()["price"] == "12.50"


def test_a_handler_problem_is_rendered(client: TestClient) -> None:
    body = problem(client.get(f"/api/v1/things/{uuid.uuid4()}"), 404)
    assert body["detail"].startswith("Thing ")


def test_an_unexpected_error_is_a_500_problem_that_leaks_nothing(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/boom")
    problem(response, 500)
    assert "hunter2" not in response.text
    assert "db.internal" not in response.text
    logged = [record for record in caplog.records if record.exc_info]
    assert logged, "the error must be logged with its traceback"
    assert logged[0].getMessage() == "unhandled error in GET /api/v1/boom"


def test_a_response_outside_the_contract_is_a_500(client: TestClient) -> None:
    problem(client.get("/api/v1/broken"), 500)


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
def test_an_invalid_token_is_a_401(
    client: TestClient, key: support.SigningKey, claims: dict[str, Any]
) -> None:
    response = client.get("/api/v1/whoami", headers=bearer(key, **claims))
    problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_token_from_an_unknown_key_is_a_401(client: TestClient) -> None:
    stranger = support.SigningKey.generate("stranger")
    problem(client.get("/api/v1/whoami", headers=bearer(stranger)), 401)


def test_a_blacklisted_token_is_a_401(
    client: TestClient, key: support.SigningKey, service: support.FakeService
) -> None:
    assert service.context is not None
    jti = str(uuid.uuid4())
    client.portal.call(service.context.redis.set, f"kit:auth:blacklist:{jti}", "1")  # type: ignore[union-attr]
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
    problem(client.get("/api/v1/things?debug=1", headers=bearer(key)), 403)


def test_partner_keys_published_in_redis_authenticate_on_any_service(
    client: TestClient, service: support.FakeService
) -> None:
    raw = "erp_published_0123456789"
    published = PublishedApiKey("key-9", ("kit.things.view",), datetime(2100, 1, 1, tzinfo=UTC))
    settings = support.settings()
    redis = fakeredis.FakeRedis(server=service.redis_server, decode_responses=True)
    redis.set(
        Keys(settings.redis_prefix)("auth", "api_key", api_key_digest(raw)), published.dumps()
    )

    whoami = client.get("/api/v1/whoami", headers={"X-API-Key": raw})

    assert (whoami.json()["subject"], whoami.json()["kind"]) == ("key-9", "api_key")
    assert redis.get(Keys(settings.redis_prefix)("auth", "api_key_used", "key-9")) is not None
    problem(client.delete(THING, headers={"X-API-Key": raw}), 403)
    body = problem(client.get("/api/v1/whoami", headers={"X-API-Key": "erp_unknown_0"}), 401)
    assert "invalid or revoked" in body["detail"]


class PartnerKeys:
    async def verify(self, raw_key: str) -> Principal | None:
        if raw_key != "partner-secret":
            return None
        return Principal("key-1", "api_key", frozenset({"kit.things.view"}))


def test_an_api_key_authenticates_a_partner(service: support.FakeService) -> None:
    definition = support.definition(api_keys=lambda ctx: PartnerKeys())
    settings = support.settings()
    app = create_app(
        definition, settings, lifespan=service.lifespan(definition, settings), spec=support.SPEC
    )
    with app.test_client() as partner:
        whoami = partner.get("/api/v1/whoami", headers={"X-API-Key": "partner-secret"})
        assert (whoami.json()["subject"], whoami.json()["kind"]) == ("key-1", "api_key")
        assert partner.get("/api/v1/things", headers={"X-API-Key": "partner-secret"}).is_success
        problem(partner.delete(THING, headers={"X-API-Key": "partner-secret"}), 403)
        problem(partner.get("/api/v1/whoami", headers={"X-API-Key": "stolen"}), 401)


# --- health ------------------------------------------------------------------------------------


def test_health_reports_each_dependency(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["service"], body["version"]) == ("ok", "kit", "2.1.0")
    assert set(body["checks"]) == {"database", "redis", "rabbitmq"}
    for check in body["checks"].values():
        assert (check["status"], check["error"]) == ("ok", None)
        assert check["latency_ms"] >= 0


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


def test_readiness_is_503_until_the_service_has_started(service: support.FakeService) -> None:
    definition, settings = support.definition(), support.settings()
    app = create_app(
        definition, settings, lifespan=service.lifespan(definition, settings), spec=support.SPEC
    )
    not_started = TestClient(app)  # not entered: the lifespan has not run
    response = not_started.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "service": "kit", "version": "2.1.0", "checks": {}}
    assert not_started.get("/health/live").status_code == 200
    with not_started:
        assert ready_soon(not_started).status_code == 200


def ready_soon(client: TestClient, seconds: float = 5) -> Any:
    """/health/ready once it answers 200 (the keys are warmed up in the background)."""
    deadline = time.monotonic() + seconds
    while (response := client.get("/health/ready")).status_code != 200:
        if time.monotonic() > deadline:
            return response
        time.sleep(0.01)
    return response


def test_readiness_is_503_until_the_jwks_has_been_fetched(
    key: support.SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(authentication, "WARM_UP_DELAYS", (0.01,))
    service = support.FakeService(support.JwksEndpoint(key))
    service.jwks.unreachable = True  # auth is not up yet
    definition, settings = support.definition(), support.settings()
    app = create_app(
        definition, settings, lifespan=service.lifespan(definition, settings), spec=support.SPEC
    )
    with TestClient(app) as starting:
        while service.jwks.fetches < 3:  # the warm-up keeps trying
            time.sleep(0.01)
        response = starting.get("/health/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert {check["status"] for check in body["checks"].values()} == {"ok"}
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
    assert not any(str(KNOWN) in label["handler"] for label in ours)


def test_each_request_writes_an_access_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="erp.access"):
        client.get(THING, headers={"X-Request-ID": "acc-1"})
    (record,) = [r for r in caplog.records if r.name == "erp.access"]
    assert record.__dict__["route"] == "/api/v1/things/{thing_id}"
    assert record.__dict__["status"] == 200
    assert record.__dict__["method"] == "GET"
    assert record.__dict__["duration_ms"] >= 0
    assert json.loads(JsonFormatter("kit").format(record))["route"] == "/api/v1/things/{thing_id}"


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

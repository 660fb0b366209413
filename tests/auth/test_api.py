"""The whole auth API over HTTP, against the real PostgreSQL, Redis and RabbitMQ.

The app (`create_app(definition, settings)`) runs under uvicorn in a thread, as `erp serve`
runs it, so `X-Forwarded-For` from 127.0.0.1 sets the client address (rate limits are per
IP: each test uses addresses of its own). Tokens that the notification service would e-mail
are taken from the outbox rows the use cases wrote.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from services.auth.service import definition
from services.auth.tables import metadata
from services.auth.tokens import SIGNING_KEYS
from services.platform.core.settings import Settings
from services.platform.persistence.pagination import encode_cursor
from services.platform.runtime.service import ServiceContext, current_context
from tests.support.accounts import PASSWORD, Account
from tests.support.events import assert_conforms
from tests.support.http import Api, new_ip, unique_email
from tests.support.polling import eventually
from tests.support.problems import problem
from tests.support.processes import ServerThread
from tests.support.schema import assert_migrations_match

pytestmark = pytest.mark.integration

T = TypeVar("T")

MIGRATIONS = Path(definition.migrations or "")


@pytest.fixture(scope="module")
def engine(auth_settings: Settings, auth_server: ServerThread) -> Iterator[Engine]:
    database = create_engine(auth_settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def api(auth_server: ServerThread) -> Iterator[Api]:
    """Requests from a client address of their own (rate limits are per address)."""
    with Api(auth_server.url, ip=new_ip()) as client:
        yield client


def register(api: Api, email: str | None = None, name: str = "Test User") -> dict[str, Any]:
    body = {"name": name, "email": email or unique_email(), "password": PASSWORD}
    return api.created("/api/v1/auth/register", body)


def user_with_roles(api: Api, admin_token: str, roles: list[str]) -> tuple[str, str]:
    """A new user holding `roles`: (user id, access token)."""
    email = unique_email("staff")
    body = {"name": "Staff", "email": email, "password": PASSWORD, "roles": roles}
    created = api("POST", "/api/v1/users", token=admin_token, json=body)
    assert created.status_code == 201, created.text
    return created.json()["id"], api.login(email, PASSWORD)["tokens"]["access_token"]


def outbox_payload(engine: Engine, event_name: str, email: str) -> dict[str, Any]:
    """The newest `event_name` envelope for `email` in the outbox, checked against AsyncAPI."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT body FROM outbox WHERE event_name = :name ORDER BY id DESC"),
            {"name": event_name},
        ).all()
    for (body,) in rows:
        envelope = json.loads(body)
        if envelope["payload"]["email"] == email:
            assert_conforms(body.encode())
            payload: dict[str, Any] = envelope["payload"]
            return payload
    raise AssertionError(f"no {event_name} for {email} in the outbox")


def count_outbox(engine: Engine, event_name: str, email: str) -> int:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT body FROM outbox WHERE event_name = :name"), {"name": event_name}
        ).all()
    return sum(json.loads(body)["payload"]["email"] == email for (body,) in rows)


def test_migrations_match_the_tables_on_postgresql_and_sqlite(
    engine: Engine, tmp_path: Path
) -> None:
    assert_migrations_match(MIGRATIONS, metadata, engine, tmp_path)


# --- sessions -------------------------------------------------------------------------------


def test_register_login_me_refresh_reuse_and_logout(api: Api, engine: Engine) -> None:
    email = unique_email("Flow").upper()
    registered = register(api, email, name="Maria Silva")
    user = registered["user"]
    assert user["email"] == email.lower()
    assert user["roles"] == []
    assert user["is_active"] is True
    assert user["email_verified_at"] is None
    assert registered["tokens"]["token_type"] == "Bearer"
    assert registered["tokens"]["expires_in"] == 900
    event = outbox_payload(engine, "auth.user.registered", email.lower())
    assert event["user_id"] == user["id"]
    assert len(event["email_verification_token"]) >= 16

    session = api.login(email, PASSWORD)
    access, refresh = session["tokens"]["access_token"], session["tokens"]["refresh_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["sub"] == user["id"]
    assert claims["iss"] == "erp-auth"
    assert claims["aud"] == "erp"
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["roles"] == []
    assert claims["permissions"] == []
    me = api("GET", "/api/v1/auth/me", token=access)
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user["id"]

    rotated = api("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert rotated.status_code == 200, rotated.text
    new_refresh = rotated.json()["refresh_token"]
    assert new_refresh != refresh
    assert api("GET", "/api/v1/auth/me", token=rotated.json()["access_token"]).status_code == 200

    # The old token again: theft. The family dies, including the token just issued.
    reused = api("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert problem(reused, 401)["detail"] == "Invalid refresh token"
    killed = api("POST", "/api/v1/auth/refresh", json={"refresh_token": new_refresh})
    problem(killed, 401)

    # Another login is another family; logout revokes it and blacklists the access token.
    session = api.login(email, PASSWORD)
    access, refresh = session["tokens"]["access_token"], session["tokens"]["refresh_token"]
    logout = api("POST", "/api/v1/auth/logout", token=access, json={"refresh_token": refresh})
    assert logout.status_code == 204, logout.text
    assert problem(api("GET", "/api/v1/auth/me", token=access), 401)["detail"] == (
        "The access token has been revoked."
    )
    problem(api("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh}), 401)


def test_logout_without_body_and_unknown_refresh_tokens(api: Api) -> None:
    access = register(api)["tokens"]["access_token"]
    # The body is optional; without a refresh token the access token's session ends (ADR 0005).
    response = api("POST", "/api/v1/auth/logout", token=access, json={})
    assert response.status_code == 204, response.text
    problem(api("POST", "/api/v1/auth/logout", token=access, json={}), 401)
    problem(api("POST", "/api/v1/auth/logout", json={}), 401)
    problem(api("POST", "/api/v1/auth/refresh", json={"refresh_token": "rt_unknown"}), 401)


def test_registration_rules(api: Api) -> None:
    email = unique_email()
    weak = api(
        "POST", "/api/v1/auth/register", json={"name": "W", "email": email, "password": "password"}
    )
    assert problem(weak, 422)["errors"] == [
        {"field": "password", "message": "must contain a letter and a digit"}
    ]
    register(api, email)
    other = api.from_another_address()
    body = {"name": "Dup", "email": email.upper(), "password": PASSWORD}
    problem(other("POST", "/api/v1/auth/register", json=body), 409)
    # The spec's `format: email` is the rule pydantic applies to models and events too.
    no_domain = {"name": "X", "email": "x@localhost", "password": PASSWORD}
    refused = problem(api.from_another_address().post("/api/v1/auth/register", json=no_domain), 400)
    assert refused["errors"][0]["field"] == "email"


def test_login_is_generic_and_refuses_inactive_users(
    api: Api, admin_token: str, engine: Engine
) -> None:
    email = unique_email("login")
    user_id = register(api, email)["user"]["id"]
    wrong = api("POST", "/api/v1/auth/login", json={"email": email, "password": "Wrong-pass-1"})
    unknown = api(
        "POST", "/api/v1/auth/login", json={"email": unique_email(), "password": PASSWORD}
    )
    assert problem(wrong, 401)["detail"] == "Invalid credentials"
    assert problem(unknown, 401)["detail"] == "Invalid credentials"

    deactivated = api("POST", f"/api/v1/users/{user_id}/deactivate", token=admin_token)
    assert deactivated.status_code == 200
    assert deactivated.json()["is_active"] is False
    login = api("POST", "/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    problem(login, 403)
    assert outbox_payload(engine, "auth.user.deactivated", email)["user_id"] == user_id

    audit = api(
        "GET",
        "/api/v1/auth/audit-log",
        token=admin_token,
        params={"subject_id": user_id, "action": "auth.login.failed"},
    )
    assert audit.status_code == 200, audit.text
    entries = audit.json()["data"]
    assert len(entries) == 2
    assert entries[0]["details"] == {"reason": "inactive"}
    assert entries[1]["details"] == {"email": email}
    assert entries[0]["ip"] == api.ip
    assert entries[0]["actor_id"] is None


# --- e-mail verification and password reset -------------------------------------------------


def test_verify_email_and_resend(api: Api, engine: Engine) -> None:
    email = unique_email("verify")
    access = register(api, email)["tokens"]["access_token"]
    first = outbox_payload(engine, "auth.user.registered", email)["email_verification_token"]

    resent = api("POST", "/api/v1/auth/verify-email/resend", token=access)
    assert resent.status_code == 202
    assert resent.json() == {"status": "accepted"}
    second = outbox_payload(engine, "auth.user.email_verification_requested", email)
    assert second["verification_token"] != first
    # Only the newest token works.
    problem(api("POST", "/api/v1/auth/verify-email", json={"token": first}), 422)

    verified = api(
        "POST", "/api/v1/auth/verify-email", json={"token": second["verification_token"]}
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified_at"] is not None
    assert verified.json()["version"] == 2
    again = api("POST", "/api/v1/auth/verify-email", json={"token": second["verification_token"]})
    problem(again, 422)
    problem(api("POST", "/api/v1/auth/verify-email/resend", token=access), 409)


def test_forgot_and_reset_password(api: Api, engine: Engine) -> None:
    email = unique_email("reset")
    old_refresh = register(api, email)["tokens"]["refresh_token"]

    unknown = unique_email("nobody")
    answer = api("POST", "/api/v1/auth/forgot-password", json={"email": unknown})
    assert answer.status_code == 202
    assert answer.json() == {"status": "accepted"}

    asked = api("POST", "/api/v1/auth/forgot-password", json={"email": email.upper()})
    assert asked.status_code == 202
    # A job prepares the e-mail after the answer (tests/security/test_password_reset.py).
    asyncio.run(
        eventually(
            lambda: count_outbox(engine, "auth.user.password_reset_requested", email),
            what="the password reset event",
        )
    )
    token = outbox_payload(engine, "auth.user.password_reset_requested", email)["reset_token"]
    assert count_outbox(engine, "auth.user.password_reset_requested", unknown) == 0

    weak = api("POST", "/api/v1/auth/reset-password", json={"token": token, "password": "abcdefgh"})
    assert problem(weak, 422)["errors"][0]["field"] == "password"
    bad = api(
        "POST", "/api/v1/auth/reset-password", json={"token": "x" * 43, "password": "N3w-pass-word"}
    )
    problem(bad, 422)
    reset = api(
        "POST", "/api/v1/auth/reset-password", json={"token": token, "password": "N3w-pass-word"}
    )
    assert reset.status_code == 204, reset.text

    problem(api("POST", "/api/v1/auth/refresh", json={"refresh_token": old_refresh}), 401)
    api.login(email, "N3w-pass-word")
    reused = api(
        "POST", "/api/v1/auth/reset-password", json={"token": token, "password": "An0ther-pass"}
    )
    problem(reused, 422)


# --- users ----------------------------------------------------------------------------------


def test_users_need_credentials_and_permissions(api: Api, admin_token: str) -> None:
    problem(api("GET", "/api/v1/users"), 401)
    problem(api("GET", "/api/v1/users", token="not.a.token"), 401)
    _, sales_token = user_with_roles(api, admin_token, ["sales"])
    forbidden = problem(api("GET", "/api/v1/users", token=sales_token), 403)
    assert forbidden["detail"] == "Missing permission: auth.users.view"


def test_user_crud(api: Api, admin_token: str, super_admin: Account, engine: Engine) -> None:
    email = unique_email("crud")
    body = {"name": "Zé Crud", "email": email, "password": PASSWORD, "roles": ["sales"]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    created = api("POST", "/api/v1/users", token=admin_token, json=body, headers=key)
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["Location"] == f"/api/v1/users/{user['id']}"
    assert created.headers["ETag"] == '"1"'
    assert user["roles"] == ["sales"]
    replay = api("POST", "/api/v1/users", token=admin_token, json=body, headers=key)
    assert replay.status_code == 201
    assert replay.json() == user
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert count_outbox(engine, "auth.user.registered", email) == 1
    problem(api("POST", "/api/v1/users", token=admin_token, json=body), 409)
    unknown_role = {**body, "email": unique_email(), "roles": ["auditor-x"]}
    assert problem(api("POST", "/api/v1/users", token=admin_token, json=unknown_role), 422)[
        "errors"
    ] == [{"field": "roles", "message": "unknown role: auditor-x"}]

    path = f"/api/v1/users/{user['id']}"
    fetched = api("GET", path, token=admin_token)
    assert fetched.status_code == 200
    assert fetched.headers["ETag"] == '"1"'
    problem(api("GET", f"/api/v1/users/{uuid.uuid4()}", token=admin_token), 404)
    problem(api("GET", "/api/v1/users/not-a-uuid", token=admin_token), 400)

    renamed = api(
        "PATCH", path, token=admin_token, json={"name": "Zé Renamed"}, headers={"If-Match": '"1"'}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["version"] == 2
    assert renamed.headers["ETag"] == '"2"'
    stale = api(
        "PATCH", path, token=admin_token, json={"name": "Lost"}, headers={"If-Match": '"1"'}
    )
    problem(stale, 412)
    taken = api("PATCH", path, token=admin_token, json={"email": super_admin.email})
    problem(taken, 409)
    weak = api("PATCH", path, token=admin_token, json={"password": "crudcrud"})
    problem(weak, 422)
    updated = outbox_payload(engine, "auth.user.updated", email)
    assert updated["changed_fields"] == ["name"]
    assert updated["name"] == "Zé Renamed"

    listed = api(
        "GET",
        "/api/v1/users",
        token=admin_token,
        params={"search": "renamed", "role": "sales", "is_active": "true", "per_page": 5},
    )
    assert listed.status_code == 200, listed.text
    assert [u["id"] for u in listed.json()["data"]] == [user["id"]]
    assert listed.json()["meta"] == {"page": 1, "per_page": 5, "total": 1, "last_page": 1}
    none = api("GET", "/api/v1/users", token=admin_token, params={"search": "%"})
    assert none.status_code == 200
    assert none.json()["data"] == []

    assert api("POST", f"{path}/deactivate", token=admin_token).json()["is_active"] is False
    again = api("POST", f"{path}/deactivate", token=admin_token)
    assert again.status_code == 200
    assert again.json()["version"] == 3
    assert api("POST", f"{path}/activate", token=admin_token).json()["is_active"] is True
    assert outbox_payload(engine, "auth.user.activated", email)["user_id"] == user["id"]

    assert api("DELETE", path, token=admin_token).status_code == 204
    assert outbox_payload(engine, "auth.user.deleted", email)["user_id"] == user["id"]
    problem(api("GET", path, token=admin_token), 404)
    problem(api("DELETE", path, token=admin_token), 404)
    gone = api("GET", "/api/v1/users", token=admin_token, params={"search": "renamed"})
    assert gone.json()["data"] == []
    problem(api("POST", "/api/v1/auth/login", json={"email": email, "password": PASSWORD}), 401)


def test_self_and_last_super_admin_are_protected(
    api: Api, admin_token: str, super_admin: Account
) -> None:
    admin_id = api("GET", "/api/v1/auth/me", token=admin_token).json()["id"]
    own = f"/api/v1/users/{admin_id}"
    problem(api("DELETE", own, token=admin_token), 409)
    problem(api("POST", f"{own}/deactivate", token=admin_token), 409)

    other_id, other_token = user_with_roles(api, admin_token, ["super-admin"])
    # With two super-admins, one may be demoted; the last one may not.
    demoted = api("PUT", own + "/roles", token=other_token, json={"roles": ["admin"]})
    assert demoted.status_code == 200, demoted.text
    last = api("PUT", f"/api/v1/users/{other_id}/roles", token=other_token, json={"roles": []})
    assert "last active super-admin" in problem(last, 409)["detail"]
    # The admin's old token carried super-admin permissions; the role change revoked it.
    problem(api("GET", "/api/v1/users", token=admin_token), 401)
    restored = api("PUT", own + "/roles", token=other_token, json={"roles": ["super-admin"]})
    assert restored.json()["roles"] == ["super-admin"]
    admin_again = api.login(super_admin.email, super_admin.password)["tokens"]["access_token"]
    assert api("DELETE", f"/api/v1/users/{other_id}", token=admin_again).status_code == 204


def test_nobody_takes_roles_away_from_themselves(api: Api, admin_token: str) -> None:
    # Two super-admins, so the last-super-admin rule is not what refuses it.
    other_id, other_token = user_with_roles(api, admin_token, ["super-admin", "admin"])
    own = f"/api/v1/users/{other_id}/roles"
    for roles in ([], ["admin"], ["super-admin"]):
        refused = api("PUT", own, token=other_token, json={"roles": roles})
        assert (
            problem(refused, 409)["detail"] == "You cannot take roles away from your own account."
        )
    assert api("GET", "/api/v1/auth/me", token=other_token).status_code == 200  # still signed in
    kept = api("GET", f"/api/v1/users/{other_id}", token=admin_token).json()["roles"]
    assert kept == ["admin", "super-admin"]
    # Another administrator may.
    demoted = api("PUT", own, token=admin_token, json={"roles": ["admin"]})
    assert demoted.status_code == 200, demoted.text


def test_admins_cannot_escalate(api: Api, admin_token: str) -> None:
    _, admin_role_token = user_with_roles(api, admin_token, ["admin"])
    body = {"name": "Sneaky", "email": unique_email(), "password": PASSWORD}
    escalate = {**body, "roles": ["super-admin"]}
    problem(api("POST", "/api/v1/users", token=admin_role_token, json=escalate), 403)
    assert api("POST", "/api/v1/users", token=admin_role_token, json=body).status_code == 201
    # Taking over a super-admin's account through its password or e-mail is refused too.
    root_id = api("GET", "/api/v1/auth/me", token=admin_token).json()["id"]
    takeover = {"password": "T4ken-over-now"}
    problem(api("PATCH", f"/api/v1/users/{root_id}", token=admin_role_token, json=takeover), 403)
    problem(api("POST", f"/api/v1/users/{root_id}/deactivate", token=admin_role_token), 403)


# --- roles and permissions ------------------------------------------------------------------


def test_roles(api: Api, admin_token: str, engine: Engine) -> None:
    permissions = api("GET", "/api/v1/permissions", token=admin_token)
    assert permissions.status_code == 200
    slugs = [p["slug"] for p in permissions.json()["data"]]
    assert len(slugs) == 32
    assert "auth.audit.view" in slugs

    roles = api("GET", "/api/v1/roles", token=admin_token, params={"per_page": 100}).json()
    system = {r["slug"]: r for r in roles["data"] if r["is_system"]}
    assert set(system) == {"super-admin", "admin", "manager", "sales", "stock-manager", "financial"}
    assert system["super-admin"]["permissions"] == sorted(slugs)

    slug = f"auditor-{uuid.uuid4().hex[:6]}"
    bad = {"slug": slug, "name": "Auditor", "permissions": ["auth.users.fly"]}
    assert problem(api("POST", "/api/v1/roles", token=admin_token, json=bad), 422)["errors"] == [
        {"field": "permissions", "message": "unknown permission: auth.users.fly"}
    ]
    body = {"slug": slug, "name": "Auditor", "permissions": ["auth.users.view", "auth.audit.view"]}
    created = api("POST", "/api/v1/roles", token=admin_token, json=body)
    assert created.status_code == 201, created.text
    role = created.json()
    assert role["permissions"] == ["auth.audit.view", "auth.users.view"]
    assert role["description"] is None
    assert role["is_system"] is False
    assert created.headers["Location"] == f"/api/v1/roles/{role['id']}"
    problem(api("POST", "/api/v1/roles", token=admin_token, json=body), 409)

    path = f"/api/v1/roles/{role['id']}"
    changed = api(
        "PATCH",
        path,
        token=admin_token,
        json={"permissions": ["auth.audit.view"], "description": "Reads the audit log"},
        headers={"If-Match": '"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    assert changed.json()["permissions"] == ["auth.audit.view"]
    problem(
        api("PATCH", path, token=admin_token, json={"name": "X"}, headers={"If-Match": '"1"'}), 412
    )
    super_admin = f"/api/v1/roles/{system['super-admin']['id']}"
    problem(api("PATCH", super_admin, token=admin_token, json={"name": "Root"}), 409)
    problem(api("DELETE", f"/api/v1/roles/{system['sales']['id']}", token=admin_token), 409)

    holder_id, holder_token = user_with_roles(api, admin_token, [slug])
    audit = api("GET", "/api/v1/auth/audit-log", token=holder_token)
    assert audit.status_code == 200
    problem(api("GET", "/api/v1/users", token=holder_token), 403)
    assert "assigned to 1 users" in problem(api("DELETE", path, token=admin_token), 409)["detail"]
    unknown = api(
        "PUT", f"/api/v1/users/{holder_id}/roles", token=admin_token, json={"roles": ["nope-x"]}
    )
    problem(unknown, 422)
    cleared = api("PUT", f"/api/v1/users/{holder_id}/roles", token=admin_token, json={"roles": []})
    assert cleared.json()["roles"] == []
    roles_event = outbox_payload(engine, "auth.user.updated", cleared.json()["email"])
    assert roles_event["changed_fields"] == ["roles"]
    assert api("DELETE", path, token=admin_token).status_code == 204
    problem(api("GET", path, token=admin_token), 404)


# --- API keys -------------------------------------------------------------------------------


def test_api_keys(api: Api, admin_token: str) -> None:
    body = {"name": "Partner", "permissions": ["auth.users.view"]}
    created = api("POST", "/api/v1/api-keys", token=admin_token, json=body)
    assert created.status_code == 201, created.text
    key = created.json()
    secret = key.pop("key")
    assert secret.startswith(key["prefix"] + "_")
    assert key["last_used_at"] is None
    assert key["revoked_at"] is None
    assert created.headers["Location"] == f"/api/v1/api-keys/{key['id']}"

    assert api("GET", "/api/v1/users", api_key=secret).status_code == 200
    problem(api("GET", "/api/v1/roles", api_key=secret), 403)
    problem(api("GET", "/api/v1/users", api_key=secret[:-1] + "x"), 401)
    problem(api("GET", "/api/v1/users", api_key="erp_nothing"), 401)
    problem(api("GET", "/api/v1/auth/me", api_key=secret), 403)

    fetched = api("GET", f"/api/v1/api-keys/{key['id']}", token=admin_token).json()
    assert fetched["last_used_at"] is not None
    assert "key" not in fetched
    listed = api("GET", "/api/v1/api-keys", token=admin_token, params={"per_page": 100}).json()
    assert key["id"] in [k["id"] for k in listed["data"]]

    _, admin_role_token = user_with_roles(api, admin_token, ["admin"])
    not_held = {"name": "Too much", "permissions": ["auth.roles.manage"]}
    refused = api("POST", "/api/v1/api-keys", token=admin_role_token, json=not_held)
    assert problem(refused, 422)["errors"] == [
        {"field": "permissions", "message": "not held by the caller: auth.roles.manage"}
    ]
    past = {**body, "expires_at": "2020-01-01T00:00:00Z"}
    problem(api("POST", "/api/v1/api-keys", token=admin_token, json=past), 422)

    assert api("DELETE", f"/api/v1/api-keys/{key['id']}", token=admin_token).status_code == 204
    problem(api("GET", "/api/v1/users", api_key=secret), 401)
    problem(api("GET", f"/api/v1/api-keys/{key['id']}", token=admin_token), 404)
    problem(api("DELETE", f"/api/v1/api-keys/{key['id']}", token=admin_token), 404)
    audit = api(
        "GET", "/api/v1/auth/audit-log", token=admin_token, params={"subject_id": key["id"]}
    ).json()["data"]
    assert [entry["action"] for entry in audit] == ["auth.api_key.revoked", "auth.api_key.created"]


# --- limits and tokens ----------------------------------------------------------------------


def test_rate_limits_answer_429_with_retry_after(api: Api) -> None:
    for _ in range(3):
        register(api)
    limited = api(
        "POST",
        "/api/v1/auth/register",
        json={"name": "X", "email": unique_email(), "password": PASSWORD},
    )
    problem(limited, 429)
    assert 0 < int(limited.headers["Retry-After"]) <= 600

    email = unique_email("brute")
    attempts = [
        api("POST", "/api/v1/auth/login", json={"email": email, "password": "Wrong-pass-1"})
        for _ in range(6)
    ]
    assert [r.status_code for r in attempts] == [401] * 5 + [429]
    assert int(attempts[-1].headers["Retry-After"]) <= 60
    # Another address is another bucket.
    login = {"email": email, "password": "x"}
    other = api.from_another_address().post("/api/v1/auth/login", json=login)
    problem(other, 401)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_expired_and_foreign_tokens_are_refused(
    api: Api, admin_token: str, engine: Engine
) -> None:
    header, payload, signature = admin_token.split(".")
    claims = jwt.decode(admin_token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(admin_token)["kid"]

    forged = ".".join([header, _b64({**claims, "sub": str(uuid.uuid4())}), signature])
    assert "signature" in problem(api("GET", "/api/v1/users", token=forged), 401)["detail"]

    with engine.connect() as connection:
        pem = connection.execute(
            text("SELECT private_pem FROM signing_keys WHERE kid = :kid"), {"kid": kid}
        ).scalar_one()
    past = datetime.now(UTC) - timedelta(hours=1)
    expired_claims = {
        **claims,
        "iat": int(past.timestamp()),
        "exp": int((past + timedelta(minutes=15)).timestamp()),
    }
    expired = jwt.encode(expired_claims, pem, algorithm="RS256", headers={"kid": kid})
    assert problem(api("GET", "/api/v1/users", token=expired), 401)["detail"] == (
        "The access token has expired."
    )

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": kid})
    problem(api("GET", "/api/v1/users", token=foreign), 401)
    unknown_kid = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "unknown"})
    problem(api("GET", "/api/v1/users", token=unknown_kid), 401)
    unsigned = ".".join([_b64({"alg": "none", "kid": kid}), payload, ""])
    problem(api("GET", "/api/v1/users", token=unsigned), 401)
    wrong_audience = jwt.encode(
        {**claims, "aud": "elsewhere"}, pem, algorithm="RS256", headers={"kid": kid}
    )
    problem(api("GET", "/api/v1/users", token=wrong_audience), 401)


def test_jwks_and_key_rotation(
    api: Api, admin_token: str, super_admin: Account, auth_server: ServerThread
) -> None:
    before = api("GET", "/.well-known/jwks.json")
    assert before.status_code == 200
    old_kid = jwt.get_unverified_header(admin_token)["kid"]
    assert old_kid in [key["kid"] for key in before.json()["keys"]]

    def keys() -> Any:
        ctx: ServiceContext = current_context()
        return ctx.state[SIGNING_KEYS]

    new_kid = auth_server.call(lambda: keys().rotate())
    assert new_kid != old_kid
    after = [key["kid"] for key in api("GET", "/.well-known/jwks.json").json()["keys"]]
    assert after[0] == new_kid
    assert old_kid in after
    # Tokens signed before the rotation keep working; new ones carry the new kid.
    assert api("GET", "/api/v1/users", token=admin_token).status_code == 200
    fresh = api.login(super_admin.email, super_admin.password)["tokens"]["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    assert api("GET", "/api/v1/users", token=fresh).status_code == 200


def test_audit_log_pages_with_a_cursor(api: Api, admin_token: str) -> None:
    email = unique_email("audit")
    for _ in range(3):
        api("POST", "/api/v1/auth/login", json={"email": email, "password": "Wrong-pass-1"})
    seen: list[str] = []
    cursor: str | None = None
    params: dict[str, Any] = {"action": "auth.login.failed", "per_page": 2}
    while True:
        page = api(
            "GET",
            "/api/v1/auth/audit-log",
            token=admin_token,
            params={**params, **({"cursor": cursor} if cursor else {})},
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["meta"]["per_page"] == 2
        seen += [e["id"] for e in body["data"] if e["details"].get("email") == email]
        assert all(e["action"] == "auth.login.failed" for e in body["data"])
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 3
    problem(api("GET", "/api/v1/auth/audit-log", token=admin_token, params={"cursor": "bad"}), 400)


@pytest.mark.parametrize("position", [2**63, 2**64, 0, -1, "18", 1.5, True])
def test_a_forged_cursor_is_a_400(api: Api, admin_token: str, position: object) -> None:
    forged = encode_cursor({"seq": position})
    response = api("GET", "/api/v1/auth/audit-log", token=admin_token, params={"cursor": forged})
    assert problem(response, 400)["errors"] == [{"field": "cursor", "message": "invalid cursor"}]


def test_an_empty_cursor_is_the_first_page(api: Api, admin_token: str) -> None:
    params = {"action": "auth.login.failed", "per_page": 2}
    first = api("GET", "/api/v1/auth/audit-log", token=admin_token, params=params)
    empty = api("GET", "/api/v1/auth/audit-log", token=admin_token, params={**params, "cursor": ""})
    assert empty.status_code == 200, empty.text
    assert [e["id"] for e in empty.json()["data"]] == [e["id"] for e in first.json()["data"]]

"""Regression probes (issue 7): what ends a session ends every token of it (ADR 0005).

Against auth under uvicorn in a thread, as `erp serve auth` serves it, on the real servers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.auth.domain import ACCESS_TOKEN_TTL
from services.auth.tokens import SIGNING_KEYS
from services.platform.runtime.service import ServiceContext, current_context
from tests.support.accounts import PASSWORD
from tests.support.http import Api, new_ip, unique_email
from tests.support.problems import problem
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
REVOKED = "The access token has been revoked."


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return scoped_env("sessions")


@pytest.fixture
def api(auth_server: ServerThread) -> Iterator[Api]:
    with Api(auth_server.url, ip=new_ip()) as client:
        yield client


def registered(api: Api) -> str:
    email = unique_email("session")
    api.created("/api/v1/auth/register", {"name": "S", "email": email, "password": PASSWORD})
    return email


def refreshed(api: Api, refresh_token: str) -> dict[str, Any]:
    response = api.post(REFRESH, json={"refresh_token": refresh_token})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def revoked(api: Api, access_token: str) -> None:
    assert problem(api.get(ME, token=access_token), 401)["detail"] == REVOKED


def test_logout_without_a_refresh_token_ends_the_whole_session(api: Api) -> None:
    email = registered(api)
    first = api.login(email, PASSWORD)["tokens"]
    second = refreshed(api, first["refresh_token"])  # the same session, rotated
    elsewhere = api.login(email, PASSWORD)["tokens"]  # another session (another device)

    logout = api.post(LOGOUT, token=second["access_token"])
    assert logout.status_code == 204, logout.text

    problem(api.post(REFRESH, json={"refresh_token": second["refresh_token"]}), 401)
    revoked(api, second["access_token"])
    revoked(api, first["access_token"])  # issued in the same session, before the rotation
    # Other sessions of the user go on.
    assert api.get(ME, token=elsewhere["access_token"]).status_code == 200
    assert refreshed(api, elsewhere["refresh_token"])["access_token"]


def test_a_reused_refresh_token_revokes_the_access_tokens_of_its_family(api: Api) -> None:
    email = registered(api)
    first = api.login(email, PASSWORD)["tokens"]
    second = refreshed(api, first["refresh_token"])
    assert api.get(ME, token=second["access_token"]).status_code == 200

    # The rotated token comes back: a stolen copy is in use.
    reused = api.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    problem(reused, 401)
    revoked(api, second["access_token"])
    revoked(api, first["access_token"])
    problem(api.post(REFRESH, json={"refresh_token": second["refresh_token"]}), 401)


def test_shrinking_a_role_revokes_its_holders_access_tokens(api: Api, admin_token: str) -> None:
    admin = api.as_caller(admin_token)
    slug = f"viewer-{uuid.uuid4().hex[:8]}"
    body = {"slug": slug, "name": "Viewer", "permissions": ["auth.users.view", "auth.audit.view"]}
    role = admin.created("/api/v1/roles", body)
    email = unique_email("holder")
    admin.created(
        "/api/v1/users", {"name": "H", "email": email, "password": PASSWORD, "roles": [slug]}
    )
    tokens = api.login(email, PASSWORD)["tokens"]
    assert api.get("/api/v1/users", token=tokens["access_token"]).status_code == 200

    shrunk = admin.patch(f"/api/v1/roles/{role['id']}", json={"permissions": ["auth.audit.view"]})
    assert shrunk.status_code == 200, shrunk.text

    revoked(api, tokens["access_token"])
    # The next refresh carries what the role holds now.
    fresh = refreshed(api, tokens["refresh_token"])["access_token"]
    problem(api.get("/api/v1/users", token=fresh), 403)
    assert api.get("/api/v1/auth/audit-log", token=fresh).status_code == 200


def test_a_logged_out_token_stays_refused_through_the_verifiers_clock_leeway(
    api: Api, auth_server: ServerThread
) -> None:
    user_id = api.created(
        "/api/v1/auth/register",
        {"name": "L", "email": unique_email("leeway"), "password": PASSWORD},
    )["user"]["id"]

    def signing_keys() -> Any:
        ctx: ServiceContext = current_context()
        return ctx.state[SIGNING_KEYS]

    # A token two seconds from its expiry: verifiers still accept it for the leeway after.
    issued_at = datetime.now(UTC) - ACCESS_TOKEN_TTL + timedelta(seconds=2)
    access = auth_server.call(
        lambda: signing_keys().issue(subject=user_id, roles=[], permissions=[], now=issued_at)
    )
    assert api.post(LOGOUT, token=access.token).status_code == 204
    time.sleep(4)  # expired now, but within the leeway
    revoked(api, access.token)

"""Secrets shown once stay shown once (issue 7, item 6), against the real servers.

A partner key's secret (`x-erp-secret` in the spec) is not kept in the idempotency store, and
a repeat of the request that created the key does not answer it again: it is a 409 naming the
key's `Location`. A password sent to a creating operation is not kept there either, not even
inside the body's fingerprint.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from services.platform.core.settings import Settings
from services.platform.http.idempotency import fingerprint
from tests.support.accounts import PASSWORD
from tests.support.http import Api, new_ip, unique_email
from tests.support.problems import problem
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

API_KEYS = "/api/v1/api-keys"


@pytest.fixture(scope="module")
def engine(auth_settings: Settings, auth_server: ServerThread) -> Iterator[Engine]:
    database = create_engine(auth_settings.database_url)
    yield database
    database.dispose()


def stored_fingerprints(engine: Engine, key: str) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT request_hash FROM idempotency_keys WHERE key = :key"), {"key": key}
        ).all()
    return [request_hash for (request_hash,) in rows]


def stored_responses(engine: Engine, key: str) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT response_body FROM idempotency_keys WHERE key = :key"), {"key": key}
        ).all()
    return [body for (body,) in rows]


def test_a_new_api_keys_secret_is_neither_stored_nor_replayed(
    auth_server: ServerThread, admin_token: str, engine: Engine
) -> None:
    idempotency_key = str(uuid.uuid4())
    body = {"name": "Partner once", "permissions": ["auth.users.view"]}
    headers = {"Idempotency-Key": idempotency_key}
    with Api(auth_server.url, admin_token, ip=new_ip()) as api:
        created = api.post(API_KEYS, json=body, headers=headers)
        assert created.status_code == 201, created.text
        secret = created.json()["key"]
        assert api.get("/api/v1/users", api_key=secret).status_code == 200

        (stored,) = stored_responses(engine, idempotency_key)
        assert secret not in stored
        assert created.json()["id"] in stored  # what is not secret is kept

        repeated = api.post(API_KEYS, json=body, headers=headers)
        refused = problem(repeated, 409)
        assert secret not in repeated.text
        assert "shown only once" in refused["detail"]
        assert repeated.headers["Location"] == created.headers["Location"]
        assert repeated.headers["Idempotent-Replayed"] == "true"
        # The repeat created nothing: the key of the first request is the only one.
        listed = api.get(API_KEYS, params={"per_page": 100}).json()["data"]
        assert [k["id"] for k in listed if k["name"] == body["name"]] == [created.json()["id"]]


def test_a_password_is_not_hashed_into_the_idempotency_store(
    auth_server: ServerThread, admin_token: str, engine: Engine
) -> None:
    idempotency_key = str(uuid.uuid4())
    body = {"name": "Staff", "email": unique_email("staff"), "password": PASSWORD}
    with Api(auth_server.url, admin_token, ip=new_ip()) as api:
        created = api.post("/api/v1/users", json=body, headers={"Idempotency-Key": idempotency_key})
        assert created.status_code == 201, created.text
    without_password = {key: value for key, value in body.items() if key != "password"}
    assert stored_fingerprints(engine, idempotency_key) == [fingerprint(without_password)]

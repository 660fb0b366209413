"""API3 Broken object property level authorization.

Mass assignment: every request schema of the specs is closed (`additionalProperties: false`),
so a property the caller may not set — ids, versions, timestamps, roles, permissions, hashes,
flags the server owns — is a 400 naming it, and nothing changes.

Excessive exposure: no answer carries a password hash, an API key's secret or hash after its
creation, a refresh token outside the answers that issue it, or a private signing key.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.support.accounts import PASSWORD, Member
from tests.support.http import Api, new_ip, unique_cnpj, unique_email
from tests.support.polling import eventually
from tests.support.problems import refusal
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

SERVER_OWNED_USER = {
    "id": str(uuid.uuid4()),
    "version": 99,
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
    "email_verified_at": "2020-01-01T00:00:00Z",
    "permissions": ["auth.roles.manage"],
    "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    "deleted_at": None,
}


# On one's own account (registration, update), roles and the active flag are the server's too.
ACCOUNT_OWNED = {**SERVER_OWNED_USER, "roles": ["super-admin"], "is_active": False}


def new_user_body() -> dict[str, Any]:
    return {"name": "Mass Assigner", "email": unique_email("mass"), "password": PASSWORD}


def assert_not_allowed(response: Any, name: str) -> None:
    errors = refusal(response, 400)["errors"]
    assert {"field": name, "message": "is not allowed"} in errors, errors


@pytest.fixture(scope="module")
def auth(auth_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    """Auth as the super-admin."""
    with Api(auth_app.url, root_token, ip=new_ip()) as api:
        yield api


@pytest.fixture(scope="module")
def inventory(inventory_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    with Api(inventory_app.url, root_token, ip=new_ip()) as api:
        yield api


@pytest.fixture(scope="module")
def member(stock_member: Member) -> Member:
    return stock_member


# --- mass assignment ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACCOUNT_OWNED))
def test_registration_takes_only_name_email_and_password(
    auth_api: Api, auth_db: Engine, name: str
) -> None:
    body = {**new_user_body(), name: ACCOUNT_OWNED[name]}
    assert_not_allowed(auth_api.post("/api/v1/auth/register", json=body), name)
    assert count_users(auth_db, body["email"]) == 0


@pytest.mark.parametrize("name", sorted(SERVER_OWNED_USER))
def test_creating_a_user_sets_no_server_owned_property(
    auth: Api, auth_db: Engine, name: str
) -> None:
    body = new_user_body()
    refused = auth.post("/api/v1/users", json={**body, name: SERVER_OWNED_USER[name]})
    assert_not_allowed(refused, name)
    assert count_users(auth_db, body["email"]) == 0


@pytest.mark.parametrize("name", sorted(ACCOUNT_OWNED))
def test_updating_a_user_changes_no_role_flag_or_server_owned_property(
    auth: Api, member: Member, name: str
) -> None:
    before = auth.get(f"/api/v1/users/{member.id}").json()
    patched = auth.patch(f"/api/v1/users/{member.id}", json={name: ACCOUNT_OWNED[name]})
    assert_not_allowed(patched, name)
    assert auth.get(f"/api/v1/users/{member.id}").json() == before


def test_an_admin_cannot_hand_out_roles_when_creating_a_user(
    admin_member: Member, auth_api: Api, auth_db: Engine
) -> None:
    """Roles are assigned by whoever manages roles (super-admin): an admin's create with
    `roles` is refused, though every other property of it is the admin's to set."""
    body = {**new_user_body(), "roles": ["super-admin"]}
    refusal(auth_api.post("/api/v1/users", json=body, token=admin_member.access_token), 403)
    assert count_users(auth_db, body["email"]) == 0


KEY_OWNED = {
    "id": str(uuid.uuid4()),
    "key": "erp_chosen_secret",
    "key_hash": "0" * 64,
    "prefix": "erp_chosen",
    "created_by": str(uuid.uuid4()),
    "created_at": "2020-01-01T00:00:00Z",
    "last_used_at": "2020-01-01T00:00:00Z",
    "revoked_at": None,
}


@pytest.mark.parametrize("name", sorted(KEY_OWNED))
def test_creating_an_api_key_sets_no_server_owned_property(auth: Api, name: str) -> None:
    body = {"name": f"mass {name}", "permissions": ["inventory.stock.view"], name: KEY_OWNED[name]}
    assert_not_allowed(auth.post("/api/v1/api-keys", json=body), name)
    listed = auth.get("/api/v1/api-keys", params={"per_page": 100}).json()["data"]
    assert f"mass {name}" not in [key["name"] for key in listed]


ROLE_OWNED = {"id": str(uuid.uuid4()), "is_system": True, "version": 7, "slug": "super-admin"}


@pytest.mark.parametrize("name", sorted(ROLE_OWNED))
def test_updating_a_role_changes_neither_its_slug_nor_server_owned_properties(
    auth: Api, name: str
) -> None:
    slug = f"probe-{uuid.uuid4().hex[:8]}"
    role = auth.created(
        "/api/v1/roles", {"slug": slug, "name": "Probe", "permissions": ["inventory.stock.view"]}
    )
    assert_not_allowed(
        auth.patch(f"/api/v1/roles/{role['id']}", json={name: ROLE_OWNED[name]}), name
    )
    assert auth.get(f"/api/v1/roles/{role['id']}").json() == role


PRODUCT_OWNED = {
    "id": str(uuid.uuid4()),
    "version": 42,
    "created_at": "2020-01-01T00:00:00Z",
    "on_hand": 1000,
    "sku": "CHANGED-SKU",
}


@pytest.fixture(scope="module")
def product(inventory: Api) -> dict[str, Any]:
    body = {
        "sku": f"PROP-{uuid.uuid4().hex[:10].upper()}",
        "name": "Property probe",
        "price": "5.00",
    }
    return inventory.created("/api/v1/products", body)


@pytest.mark.parametrize("name", sorted(PRODUCT_OWNED))
def test_updating_a_product_changes_no_sku_stock_or_server_owned_property(
    inventory: Api, product: dict[str, Any], name: str
) -> None:
    patched = inventory.patch(f"/api/v1/products/{product['id']}", json={name: PRODUCT_OWNED[name]})
    assert_not_allowed(patched, name)
    assert inventory.get(f"/api/v1/products/{product['id']}").json() == product


@pytest.mark.parametrize("name", ["is_default", "id", "version"])
def test_creating_a_warehouse_sets_no_server_owned_property(inventory: Api, name: str) -> None:
    code = f"W{uuid.uuid4().hex[:8].upper()}"
    value = {"is_default": True, "id": str(uuid.uuid4()), "version": 3}[name]
    body = {"code": code, "name": "Mass", name: value}
    assert_not_allowed(inventory.post("/api/v1/warehouses", json=body), name)
    listed = inventory.get("/api/v1/warehouses", params={"per_page": 100}).json()["data"]
    assert code not in [warehouse["code"] for warehouse in listed]


@pytest.mark.parametrize("name", ["user_id", "on_hand_before", "on_hand_after", "type"])
def test_receiving_stock_records_no_caller_chosen_movement_fact(
    inventory: Api, product: dict[str, Any], name: str
) -> None:
    value = {
        "user_id": str(uuid.uuid4()),
        "on_hand_before": 0,
        "on_hand_after": 10**6,
        "type": "out",
    }
    body = {
        "product_id": product["id"],
        "quantity": 1,
        "reason": "mass assignment",
        name: value[name],
    }
    assert_not_allowed(inventory.post("/api/v1/stock/receive", json=body), name)
    assert inventory.get(f"/api/v1/products/{product['id']}/stock").json()["on_hand"] == 0


# --- excessive exposure ---------------------------------------------------------------------


def count_users(auth_db: Engine, email: str) -> int:
    with auth_db.connect() as connection:
        count: int = connection.execute(
            text("SELECT count(*) FROM users WHERE email = :email"), {"email": email}
        ).scalar_one()
        return count


def stored_secrets(auth_db: Engine, member: Member) -> list[str]:
    """What auth stores about `member` that no answer may carry: its password hash, and the
    hashes of its refresh tokens."""
    with auth_db.connect() as connection:
        password_hash = connection.execute(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": member.id}
        ).scalar_one()
        token_hashes = connection.execute(
            text("SELECT token_hash FROM refresh_tokens WHERE user_id = :id"), {"id": member.id}
        ).scalars()
        return [password_hash, *token_hashes]


def test_no_user_answer_carries_a_password_hash_or_a_refresh_token(
    auth: Api, auth_api: Api, member: Member, auth_db: Engine
) -> None:
    secrets = [*stored_secrets(auth_db, member), member.refresh_token, member.password]
    answers = {
        "me": auth_api.get("/api/v1/auth/me", token=member.access_token),
        "get": auth.get(f"/api/v1/users/{member.id}"),
        "list": auth.get("/api/v1/users", params={"search": member.email}),
        "update": auth.patch(f"/api/v1/users/{member.id}", json={"name": "Renamed"}),
        "audit": auth.get("/api/v1/auth/audit-log", params={"subject_id": member.id}),
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        for secret in secrets:
            assert secret not in answer.text, name
        assert "$argon2" not in answer.text, name
        assert not re.search(r'"password[^"]*"\s*:', answer.text), name


def test_an_api_key_secret_is_shown_once_and_its_hash_never(
    auth: Api, auth_db: Engine, inventory_api: Api
) -> None:
    created = auth.created(
        "/api/v1/api-keys", {"name": "Exposure probe", "permissions": ["inventory.stock.view"]}
    )
    secret = created["key"]
    assert inventory_api.get("/api/v1/stock", api_key=secret).status_code == 200
    with auth_db.connect() as connection:
        key_hash = connection.execute(
            text("SELECT key_hash FROM api_keys WHERE id = :id"), {"id": created["id"]}
        ).scalar_one()
    answers = {
        "get": auth.get(f"/api/v1/api-keys/{created['id']}"),
        "list": auth.get("/api/v1/api-keys", params={"per_page": 100}),
        "audit": auth.get("/api/v1/auth/audit-log", params={"subject_id": created["id"]}),
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        assert created["id"] in answer.text, name  # the key is there, its secrets are not
        assert secret not in answer.text, name
        assert key_hash not in answer.text, name
        assert '"key"' not in answer.text, name
        assert '"key_hash"' not in answer.text, name


def one_time_token(auth_db: Engine, event_name: str, email: str, field: str) -> str | None:
    """The token auth published for `email` (to be e-mailed by notification), from the outbox
    (None while there is none)."""
    with auth_db.connect() as connection:
        bodies = connection.execute(
            text("SELECT body FROM outbox WHERE event_name = :name ORDER BY id DESC"),
            {"name": event_name},
        ).scalars()
        for body in bodies:
            payload = json.loads(body)["payload"]
            if payload["email"] == email:
                token: str = payload[field]
                return token
    return None


async def test_one_time_tokens_go_out_by_e_mail_only(
    auth_api: Api, auth: Api, auth_db: Engine
) -> None:
    """The verification and reset tokens prove the caller reads the mailbox: no answer, and no
    audit entry, may carry them."""
    body = new_user_body()
    registered = auth_api.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    verification = one_time_token(
        auth_db, "auth.user.registered", body["email"], "email_verification_token"
    )
    assert verification is not None
    forgot = auth_api.post("/api/v1/auth/forgot-password", json={"email": body["email"]})
    assert forgot.status_code == 202, forgot.text
    # A job writes the reset e-mail's event after the answer.
    reset = await eventually(
        lambda: one_time_token(
            auth_db, "auth.user.password_reset_requested", body["email"], "reset_token"
        )
    )
    user_id = registered.json()["user"]["id"]
    audit = auth.get("/api/v1/auth/audit-log", params={"subject_id": user_id})
    assert audit.status_code == 200, audit.text
    assert audit.json()["data"], audit.text
    for answer in (registered, forgot, audit):
        assert verification not in answer.text
        assert reset not in answer.text


def test_the_jwks_carries_public_keys_only(auth_api: Api) -> None:
    keys = auth_api.get("/.well-known/jwks.json").json()["keys"]
    assert keys
    for key in keys:
        assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}, sorted(key)


# --- financial accounts: the status, the due date, the settlement and an order are the server's


SERVER_OWNED_ACCOUNT = {
    "id": str(uuid.uuid4()),
    "status": "paid",
    "due_date": "2099-12-31",
    "paid_at": "2020-01-01T00:00:00Z",
    "received_at": "2020-01-01T00:00:00Z",
    "order_id": str(uuid.uuid4()),
    "version": 99,
}


@pytest.fixture(scope="module")
def financial(financial_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    with Api(financial_app.url, root_token, ip=new_ip()) as api:
        yield api


def accounts_of(financial: Api, kind: str, **owner: str) -> list[dict[str, Any]]:
    found = financial.get(f"/api/v1/{kind}", params=owner)
    assert found.status_code == 200, found.text
    rows: list[dict[str, Any]] = found.json()["data"]
    return rows


@pytest.mark.parametrize("name", sorted(SERVER_OWNED_ACCOUNT))
def test_an_account_payable_sets_no_server_owned_property(financial: Api, name: str) -> None:
    supplier = financial.created("/api/v1/suppliers", {"name": "Supplies", "cnpj": unique_cnpj()})
    body = {
        "supplier_id": supplier["id"],
        "description": "Paper",
        "amount": "10.00",
        "issue_date": "2099-01-10",
        "payment_terms_days": 30,
    }
    refused = financial.post("/api/v1/payables", json={**body, name: SERVER_OWNED_ACCOUNT[name]})
    assert_not_allowed(refused, name)
    assert accounts_of(financial, "payables", supplier_id=supplier["id"]) == []
    created = financial.created("/api/v1/payables", body)  # the same without it is taken
    assert (created["status"], created["version"]) == ("pending", 1)


@pytest.mark.parametrize("name", sorted(SERVER_OWNED_ACCOUNT))
def test_a_manual_account_receivable_sets_no_server_owned_property(
    financial: Api, name: str
) -> None:
    customer = str(uuid.uuid4())
    body = {
        "customer_id": customer,
        "customer_name": "Mass Assigner",
        "description": "Service",
        "amount": "10.00",
        "issue_date": "2099-01-10",
        "payment_terms_days": 0,
    }
    refused = financial.post("/api/v1/receivables", json={**body, name: SERVER_OWNED_ACCOUNT[name]})
    assert_not_allowed(refused, name)
    assert accounts_of(financial, "receivables", customer_id=customer) == []
    created = financial.created("/api/v1/receivables", body)
    assert (created["status"], created["order_id"]) == ("pending", None)

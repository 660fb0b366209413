"""Regression probes (issue 7): a partner key never does more than its creator may do now, and
keys created by keys live and die with their parent (ADR 0005).

Against the real servers: auth under uvicorn in a thread (as `erp serve auth` serves it), which
checks keys in its database, and inventory, which verifies them from shared Redis (the kit's
`PublishedApiKeys`). Every change is checked on both at once, right after the answer that made
it: the bound on staleness is zero.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.inventory.service import definition as inventory_definition
from services.platform.core.settings import load_settings
from services.platform.runtime.app import create_app
from tests.support.accounts import PASSWORD
from tests.support.http import Api, new_ip, unique_email
from tests.support.problems import problem
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

USERS = "/api/v1/users"  # auth.users.view, checked by auth against its database
STOCK = "/api/v1/stock"  # inventory.stock.view, checked by inventory from Redis
KEYS = "/api/v1/api-keys"
KEYMAKER = ["auth.api_keys.manage", "auth.users.view", "inventory.stock.view"]


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return scoped_env("keylifecycle")


@pytest.fixture(scope="module")
def inventory(module_env: Mapping[str, str], auth_server: ServerThread) -> Iterator[ServerThread]:
    settings = load_settings("inventory", 8002, {**module_env, "ERP_AUTH_URL": auth_server.url})
    with ServerThread(create_app(inventory_definition, settings)).start() as server:
        yield server


@pytest.fixture
def admin(auth_server: ServerThread, admin_token: str) -> Iterator[Api]:
    with Api(auth_server.url, admin_token, ip=new_ip()) as client:
        yield client


@pytest.fixture
def partner(inventory: ServerThread) -> Iterator[Api]:
    """Requests to inventory with no bearer token."""
    with Api(inventory.url) as client:
        yield client


class Staff:
    """A user holding a role of its own, and what it takes to manage it."""

    def __init__(self, admin: Api, permissions: list[str]) -> None:
        self.admin = admin
        role = {"slug": f"keys-{uuid.uuid4().hex[:8]}", "name": "Keys", "permissions": permissions}
        self.role = admin.created("/api/v1/roles", role)
        self.email = unique_email("keymaker")
        body = {"name": "Key maker", "email": self.email, "password": PASSWORD}
        self.id: str = admin.created(USERS, {**body, "roles": [self.role["slug"]]})["id"]
        self.api = self.logged_in()

    def logged_in(self) -> Api:
        """The user's own client, with a fresh access token."""
        return self.admin.as_caller(
            self.admin.login(self.email, PASSWORD)["tokens"]["access_token"]
        )

    def key(self, permissions: list[str], **extra: Any) -> dict[str, Any]:
        return self.api.created(KEYS, {"name": "partner", "permissions": permissions, **extra})


def can(auth: Api, partner: Api, key: str) -> tuple[int, int]:
    """The status of the key's calls (the key alone, no bearer token) to auth and inventory."""
    on_auth = auth.as_caller(None).get(USERS, api_key=key)
    return on_auth.status_code, partner.get(STOCK, api_key=key).status_code


def refused(auth: Api, partner: Api, key: str, status: int) -> None:
    problem(auth.as_caller(None).get(USERS, api_key=key), status)
    problem(partner.get(STOCK, api_key=key), status)


def test_a_deactivated_creators_keys_stop_at_once_everywhere(admin: Api, partner: Api) -> None:
    staff = Staff(admin, KEYMAKER)
    key = staff.key(["auth.users.view", "inventory.stock.view"])["key"]
    assert can(admin, partner, key) == (200, 200)

    assert admin.post(f"{USERS}/{staff.id}/deactivate").status_code == 200
    refused(admin, partner, key, 401)

    # Deactivation suspends the keys; activating the user again brings them back.
    assert admin.post(f"{USERS}/{staff.id}/activate").status_code == 200
    assert can(admin, partner, key) == (200, 200)


def test_a_deleted_creators_keys_are_revoked(admin: Api, partner: Api) -> None:
    staff = Staff(admin, KEYMAKER)
    created = staff.key(["auth.users.view", "inventory.stock.view"])
    assert can(admin, partner, created["key"]) == (200, 200)

    assert admin.delete(f"{USERS}/{staff.id}").status_code == 204
    refused(admin, partner, created["key"], 401)
    problem(admin.get(f"{KEYS}/{created['id']}"), 404)
    audit = admin.get("/api/v1/auth/audit-log", params={"subject_id": created["id"]}).json()
    assert audit["data"][0]["action"] == "auth.api_key.revoked"
    assert audit["data"][0]["details"]["reason"] == "creator_deleted"


def test_a_key_loses_what_its_creator_loses(admin: Api, partner: Api) -> None:
    staff = Staff(admin, KEYMAKER)
    key = staff.key(["auth.users.view", "inventory.stock.view"])["key"]
    assert can(admin, partner, key) == (200, 200)

    # The creator's role shrinks: the key shrinks with it, on both services.
    patch = {"permissions": ["auth.api_keys.manage", "auth.users.view"]}
    assert admin.patch(f"/api/v1/roles/{staff.role['id']}", json=patch).status_code == 200
    assert can(admin, partner, key) == (200, 403)

    # The creator's roles change: the key is bounded by the new ones.
    slug = f"audit-{uuid.uuid4().hex[:8]}"
    admin.created("/api/v1/roles", {"slug": slug, "name": "A", "permissions": ["auth.audit.view"]})
    changed = admin.put(f"{USERS}/{staff.id}/roles", json={"roles": [slug]})
    assert changed.status_code == 200, changed.text
    refused(admin, partner, key, 403)

    # Given back, the permissions come back (never beyond what the key was granted).
    admin.put(f"{USERS}/{staff.id}/roles", json={"roles": [staff.role["slug"]]})
    admin.patch(f"/api/v1/roles/{staff.role['id']}", json={"permissions": KEYMAKER})
    assert can(admin, partner, key) == (200, 200)


def test_keys_made_by_keys_live_within_their_parent(admin: Api, partner: Api) -> None:
    staff = Staff(admin, KEYMAKER)
    parent_expiry = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    parent = staff.key(KEYMAKER, expires_at=parent_expiry.isoformat())

    def mint(body: dict[str, Any]) -> Any:
        return admin.as_caller(None).post(KEYS, api_key=parent["key"], json=body)

    # The child may not outlive the parent, nor hold what the parent lacks.
    later = (parent_expiry + timedelta(days=1)).isoformat()
    too_late = problem(mint({"name": "c", "permissions": KEYMAKER, "expires_at": later}), 422)
    assert too_late["errors"][0]["field"] == "expires_at"
    too_much = problem(mint({"name": "c", "permissions": ["inventory.stock.update"]}), 422)
    assert too_much["errors"][0]["field"] == "permissions"

    # Without an expiry it inherits the parent's; a grandchild too.
    child_response = mint({"name": "child", "permissions": KEYMAKER})
    assert child_response.status_code == 201, child_response.text
    child = child_response.json()
    assert datetime.fromisoformat(child["expires_at"]) == parent_expiry
    grandchild = admin.as_caller(None).created(
        KEYS, {"name": "grandchild", "permissions": ["inventory.stock.view"]}, api_key=child["key"]
    )
    assert datetime.fromisoformat(grandchild["expires_at"]) == parent_expiry
    assert partner.get(STOCK, api_key=grandchild["key"]).status_code == 200

    # A key cannot revoke the key it descends from (it would revoke itself).
    problem(admin.as_caller(None).delete(f"{KEYS}/{parent['id']}", api_key=child["key"]), 409)

    # The child belongs to the parent's creator: dismissing the creator stops it too.
    assert admin.post(f"{USERS}/{staff.id}/deactivate").status_code == 200
    refused(admin, partner, child["key"], 401)
    assert admin.post(f"{USERS}/{staff.id}/activate").status_code == 200
    assert can(admin, partner, child["key"]) == (200, 200)

    # Revoking the parent revokes its descendants, everywhere, at once.
    assert staff.logged_in().delete(f"{KEYS}/{parent['id']}").status_code == 204
    for descendant in (child, grandchild):
        refused(admin, partner, descendant["key"], 401)
        problem(admin.get(f"{KEYS}/{descendant['id']}"), 404)

"""Idempotency-Key abuse: a key is the caller's own — another caller's same key replays
nothing of theirs (above all not a partner key's secret) — it binds one body, it is bounded and
printable, and a replay is still an authorised request.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.accounts import PASSWORD, Member, Members
from tests.support.http import Api, new_ip
from tests.support.problems import refusal
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

REPLAYED = "Idempotent-Replayed"


def product_body() -> dict[str, Any]:
    return {"sku": f"IDEM-{uuid.uuid4().hex[:10].upper()}", "name": "Idempotent", "price": "3.00"}


def create_product(api: Api, token: str, key: str, body: dict[str, Any]) -> Any:
    return api.post("/api/v1/products", json=body, token=token, headers={"Idempotency-Key": key})


@pytest.fixture(scope="module")
def owner(stock_member: Member) -> Member:
    return stock_member


@pytest.fixture(scope="module")
def other(members: Members) -> Member:
    return members.new(["stock-manager"], tag="other")


def test_the_owner_replays_their_own_request(inventory_api: Api, owner: Member) -> None:
    """What the probes below must not get: the stored answer, marked as replayed."""
    key, body = str(uuid.uuid4()), product_body()
    first = create_product(inventory_api, owner.access_token, key, body)
    assert first.status_code == 201, first.text
    again = create_product(inventory_api, owner.access_token, key, body)
    assert again.status_code == 201, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()


def test_another_users_same_key_and_body_is_their_own_request(
    inventory_api: Api, owner: Member, other: Member
) -> None:
    key, body = str(uuid.uuid4()), product_body()
    first = create_product(inventory_api, owner.access_token, key, body)
    assert first.status_code == 201, first.text
    # Not the owner's 201 replayed: the other's own request, for a SKU that is taken.
    taken = create_product(inventory_api, other.access_token, key, body)
    assert REPLAYED not in taken.headers
    refusal(taken, 409)
    assert first.json()["id"] not in taken.text


def test_another_users_same_key_with_another_body_is_no_conflict(
    inventory_api: Api, owner: Member, other: Member
) -> None:
    key = str(uuid.uuid4())
    first = create_product(inventory_api, owner.access_token, key, product_body())
    assert first.status_code == 201, first.text
    theirs = create_product(inventory_api, other.access_token, key, product_body())
    assert theirs.status_code == 201, theirs.text
    assert REPLAYED not in theirs.headers
    assert theirs.json()["id"] != first.json()["id"]


def test_a_partner_key_secret_is_never_replayed_to_another_admin(
    auth_app: ServiceProcess, root_token: str, admin_member: Member
) -> None:
    key = str(uuid.uuid4())
    body = {"name": "Same request", "permissions": ["inventory.stock.view"]}
    with Api(auth_app.url, ip=new_ip()) as auth:
        headers = {"Idempotency-Key": key}
        first = auth.post("/api/v1/api-keys", json=body, token=root_token, headers=headers)
        assert first.status_code == 201, first.text
        theirs = auth.post(
            "/api/v1/api-keys", json=body, token=admin_member.access_token, headers=headers
        )
        assert theirs.status_code == 201, theirs.text
    assert REPLAYED not in theirs.headers
    assert theirs.json()["id"] != first.json()["id"]
    assert first.json()["key"] not in theirs.text


def test_the_same_key_on_another_operation_is_another_request(
    inventory_api: Api, owner: Member
) -> None:
    key = str(uuid.uuid4())
    assert create_product(inventory_api, owner.access_token, key, product_body()).status_code == 201
    category = inventory_api.post(
        "/api/v1/categories",
        json={"name": f"Idempotent {key[:8]}"},
        token=owner.access_token,
        headers={"Idempotency-Key": key},
    )
    assert category.status_code == 201, category.text
    assert REPLAYED not in category.headers
    assert "slug" in category.json()


def test_the_same_key_with_another_body_is_a_422(inventory_api: Api, owner: Member) -> None:
    key = str(uuid.uuid4())
    assert create_product(inventory_api, owner.access_token, key, product_body()).status_code == 201
    changed = product_body()
    refused = create_product(inventory_api, owner.access_token, key, changed)
    detail = refusal(refused, 422)["detail"]
    assert detail == "This Idempotency-Key was already used with a different request body."
    listed = inventory_api.get("/api/v1/products", params={"search": changed["sku"]})
    assert listed.json()["data"] == []


INVALID_KEYS = {
    "over-long": "k" * 256,
    "tab": "tab\tkey",
    "non-ascii": "cl\u00e9",
    "empty": "",
}


@pytest.mark.parametrize("case", sorted(INVALID_KEYS))
def test_an_invalid_key_is_a_400_and_nothing_is_created(
    inventory_api: Api, owner: Member, case: str
) -> None:
    body = product_body()
    response = inventory_api.post(
        "/api/v1/products",
        json=body,
        token=owner.access_token,
        headers={"Idempotency-Key": INVALID_KEYS[case].encode()},
    )
    errors = refusal(response, 400)["errors"]
    assert {error["field"] for error in errors} == {"Idempotency-Key"}, errors
    assert (
        inventory_api.get("/api/v1/products", params={"search": body["sku"]}).json()["data"] == []
    )


def test_the_longest_key_is_taken(inventory_api: Api, owner: Member) -> None:
    """The bound the over-long key is refused by."""
    created = create_product(inventory_api, owner.access_token, "k" * 255, product_body())
    assert created.status_code == 201, created.text


@pytest.fixture
def demoted(members: Members) -> Member:
    return members.new(["stock-manager"], tag="demoted")


def test_a_replay_is_refused_once_the_caller_lost_the_permission(
    inventory_api: Api, auth_api: Api, root_token: str, demoted: Member
) -> None:
    key, body = str(uuid.uuid4()), product_body()
    assert create_product(inventory_api, demoted.access_token, key, body).status_code == 201
    stripped = auth_api.put(
        f"/api/v1/users/{demoted.id}/roles", json={"roles": []}, token=root_token
    )
    assert stripped.status_code == 200, stripped.text
    token = auth_api.from_another_address().login(demoted.email, PASSWORD)["tokens"]["access_token"]
    refused = create_product(inventory_api, token, key, body)
    assert REPLAYED not in refused.headers
    refusal(refused, 403)
    anonymous = inventory_api.post("/api/v1/products", json=body, headers={"Idempotency-Key": key})
    refusal(anonymous, 401)

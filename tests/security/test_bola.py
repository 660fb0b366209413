"""API1 Broken object level authorization: one caller's objects — an account, its sessions, a
partner key — are out of reach of another caller who may not manage them, whichever id is
named; and the answer is the same for an id that exists and one that does not (no oracle).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.accounts import PASSWORD, Member, Members
from tests.support.http import Api, new_ip
from tests.support.problems import refusal
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

OUTRANKED = "You cannot manage a user who holds permissions you do not hold."

# Every operation on one user by id, with a body that would change it.
ON_A_USER: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "read": ("GET", "", None),
    "rename": ("PATCH", "", {"name": "Taken over"}),
    "change-password": ("PATCH", "", {"password": "Taken-0ver-pass"}),
    "change-email": ("PATCH", "", {"email": "taken-over@example.com"}),
    "delete": ("DELETE", "", None),
    "deactivate": ("POST", "/deactivate", None),
    "activate": ("POST", "/activate", None),
    "set-roles": ("PUT", "/roles", {"roles": ["super-admin"]}),
}


@pytest.fixture(scope="module")
def victim(stock_member: Member) -> Member:
    return stock_member


@pytest.fixture(scope="module")
def intruder(plain_member: Member) -> Member:
    """A user without roles, who would like to reach other accounts."""
    return plain_member


@pytest.fixture(scope="module")
def manager(members: Members) -> Member:
    """Sees every module (`*.*.view`), manages no partner keys."""
    return members.new(["manager"], tag="manager")


@pytest.fixture
def as_root(auth_api: Api, root_token: str) -> Api:
    return auth_api.as_caller(root_token)


def user_state(as_root: Api, user_id: str) -> dict[str, Any]:
    response = as_root.get(f"/api/v1/users/{user_id}")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


def act_on(api: Api, user_id: str, action: str, **credentials: Any) -> Any:
    method, suffix, body = ON_A_USER[action]
    return api(method, f"/api/v1/users/{user_id}{suffix}", json=body, **credentials)


@pytest.mark.parametrize("action", sorted(ON_A_USER))
def test_a_user_without_roles_reaches_no_account_by_id(
    intruder: Member, victim: Member, auth_api: Api, as_root: Api, action: str
) -> None:
    before = user_state(as_root, victim.id)
    answers = [
        refusal(act_on(auth_api, user_id, action, token=intruder.access_token), 403)
        for user_id in (victim.id, intruder.id, str(uuid.uuid4()))
    ]
    # Someone else's account, one's own, one that does not exist: the same answer.
    assert len({answer["detail"] for answer in answers}) == 1, answers
    assert user_state(as_root, victim.id) == before


@pytest.fixture(scope="module")
def other_super_admin(members: Members) -> Member:
    """A super-admin an admin might try to take over (not the suite's root)."""
    return members.new(["super-admin"], tag="super")


@pytest.mark.parametrize("action", sorted(set(ON_A_USER) - {"read", "set-roles"}))
def test_an_admin_cannot_take_over_a_super_admin(
    admin_member: Member, other_super_admin: Member, auth_api: Api, as_root: Api, action: str
) -> None:
    before = user_state(as_root, other_super_admin.id)
    refused = act_on(auth_api, other_super_admin.id, action, token=admin_member.access_token)
    assert refusal(refused, 403)["detail"] == OUTRANKED
    assert user_state(as_root, other_super_admin.id) == before
    auth_api.from_another_address().login(other_super_admin.email, PASSWORD)


def test_me_is_the_token_holders_account_only(
    intruder: Member, victim: Member, auth_api: Api
) -> None:
    me = auth_api.get("/api/v1/auth/me", token=intruder.access_token)
    assert me.status_code == 200, me.text
    assert me.json()["id"] == intruder.id
    # No parameter names another account: the identity is the token's.
    for name in ("user_id", "id", "sub"):
        named = auth_api.get(
            "/api/v1/auth/me", token=intruder.access_token, params={name: victim.id}
        )
        assert refusal(named, 400)["errors"] == [
            {"field": name, "message": "is not a parameter of this operation"}
        ]


def test_logging_out_with_someone_elses_refresh_token_ends_no_session_of_theirs(
    members: Members, auth_api: Api
) -> None:
    owner, intruder = members.new(tag="owner"), members.new(tag="intruder")
    logout = auth_api.post(
        "/api/v1/auth/logout",
        token=intruder.access_token,
        json={"refresh_token": owner.refresh_token},
    )
    assert logout.status_code == 204, logout.text
    refreshed = auth_api.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert refreshed.status_code == 200, refreshed.text
    assert auth_api.get("/api/v1/auth/me", token=owner.access_token).status_code == 200


@pytest.fixture(scope="module")
def partner_key(auth_app: ServiceProcess, root_token: str) -> Iterator[dict[str, Any]]:
    with Api(auth_app.url, root_token, ip=new_ip()) as api:
        body = {"name": "Partner of root", "permissions": ["inventory.stock.view"]}
        yield api.created("/api/v1/api-keys", body)


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("GET", "/{id}"), ("DELETE", "/{id}")])
def test_api_keys_are_out_of_reach_without_the_permission(
    manager: Member,
    partner_key: dict[str, Any],
    auth_api: Api,
    inventory_api: Api,
    method: str,
    suffix: str,
) -> None:
    """Someone else's key is neither listed, read nor revoked by a manager, and a made-up id
    gets the same answer."""
    answers = [
        refusal(
            auth_api(
                method,
                f"/api/v1/api-keys{suffix.format(id=key_id)}",
                token=manager.access_token,
            ),
            403,
        )
        for key_id in (partner_key["id"], str(uuid.uuid4()))
    ]
    assert (
        answers[0]["detail"] == answers[1]["detail"] == ("Missing permission: auth.api_keys.manage")
    )
    assert inventory_api.get("/api/v1/stock", api_key=partner_key["key"]).status_code == 200


def test_a_partner_key_cannot_read_the_keys_or_the_users_it_was_not_given(
    partner_key: dict[str, Any], victim: Member, auth_api: Api
) -> None:
    for path in (
        f"/api/v1/api-keys/{partner_key['id']}",
        "/api/v1/api-keys",
        f"/api/v1/users/{victim.id}",
    ):
        refusal(auth_api.get(path, api_key=partner_key["key"]), 403)


@pytest.fixture(scope="module")
def deleted(members: Members, auth_app: ServiceProcess, root_token: str) -> Member:
    member = members.new(tag="deleted")
    with Api(auth_app.url, root_token) as api:
        assert api.delete(f"/api/v1/users/{member.id}").status_code == 204
    return member


@pytest.mark.parametrize("action", sorted(ON_A_USER))
def test_a_deleted_or_unknown_account_is_not_found_even_for_the_super_admin(
    deleted: Member, as_root: Api, action: str
) -> None:
    for user_id in (deleted.id, str(uuid.uuid4())):
        refusal(act_on(as_root, user_id, action), 404)

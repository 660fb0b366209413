"""Rate limits that a client cannot get around (issue 7, item 3).

* The client address comes from `X-Forwarded-For` only when the peer is a trusted proxy
  (`ERP_TRUSTED_PROXIES`, empty by default): `auth_server` here runs with the default, so the
  headers a local client forges change nothing — not its rate-limit bucket, not the audit log.
* Login is limited per client address whatever the e-mail, and per account whatever the
  address (failed attempts: a right password takes its hit back). `proxied_auth` trusts
  127.0.0.1, as a deployment behind its proxy does, so each `Api(ip=...)` is a client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.accounts import PASSWORD
from tests.support.http import LOGIN, Api, new_ip, unique_email
from tests.support.problems import problem
from tests.support.processes import ServerThread, ServiceProcess

pytestmark = pytest.mark.integration

REGISTER = "/api/v1/auth/register"


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    """This module's own databases and Redis keys, and no trusted proxy (the default)."""
    env = dict(scoped_env("security_rate_limits"))
    env.pop("ERP_TRUSTED_PROXIES", None)
    return env


@pytest.fixture(scope="module")
def proxied_auth(
    module_env: Mapping[str, str], auth_server: ServerThread, service_logs: Path
) -> Iterator[str]:
    """`erp serve auth` on the same databases, behind a trusted proxy at 127.0.0.1."""
    env = {**module_env, "ERP_TRUSTED_PROXIES": "127.0.0.1"}
    with ServiceProcess("auth", env, service_logs).start() as service:
        yield service.url


def register(api: Api, email: str) -> int:
    body = {"name": "Spoofer", "email": email, "password": PASSWORD}
    return api.post(REGISTER, json=body).status_code


def test_a_forged_forwarded_for_is_not_a_new_client(auth_server: ServerThread) -> None:
    # Registration allows 3 per 10 minutes per client: forged addresses do not add more.
    with Api(auth_server.url) as api:
        statuses = [
            api.post(
                REGISTER,
                json={"name": "Spoofer", "email": unique_email("spoof"), "password": PASSWORD},
                headers={"X-Forwarded-For": new_ip()},
            )
            for _ in range(4)
        ]
    assert [r.status_code for r in statuses[:3]] == [201] * 3
    refused = problem(statuses[3], 429)
    assert "Rate limit" in refused["detail"]
    assert int(statuses[3].headers["Retry-After"]) > 0


def test_the_audit_log_records_the_peer_not_a_forged_address(
    auth_server: ServerThread, admin_token: str
) -> None:
    email = unique_email("audited")
    forged = "203.0.113.99"
    with Api(auth_server.url) as api:
        failed = api.post(
            LOGIN,
            json={"email": email, "password": "Wrong-passw0rd"},
            headers={"X-Forwarded-For": forged},
        )
        problem(failed, 401)
        audit = api.get("/api/v1/auth/audit-log", token=admin_token, params={"per_page": 100})
    assert audit.status_code == 200, audit.text
    failures = [
        entry
        for entry in audit.json()["data"]
        if entry["action"] == "auth.login.failed" and entry["details"].get("email") == email
    ]
    assert [entry["ip"] for entry in failures] == ["127.0.0.1"]


def test_one_address_trying_many_accounts_is_limited(proxied_auth: str) -> None:
    with Api(proxied_auth, ip=new_ip()) as api:
        attempts = [
            api.post(LOGIN, json={"email": unique_email("sprayed"), "password": "Guess-passw0rd"})
            for _ in range(21)
        ]
        assert [r.status_code for r in attempts[:20]] == [401] * 20
        refused = problem(attempts[20], 429)
        assert "retry in" in refused["detail"]
        assert 0 < int(attempts[20].headers["Retry-After"]) <= 600
        # Another client is not affected.
        other = api.from_another_address().post(
            LOGIN, json={"email": unique_email("other"), "password": "Guess-passw0rd"}
        )
        problem(other, 401)


def test_many_addresses_trying_one_account_are_limited(proxied_auth: str) -> None:
    email = unique_email("targeted")
    with Api(proxied_auth, ip=new_ip()) as owner:
        assert register(owner, email) == 201
        attempts = [
            owner.from_another_address().post(
                LOGIN, json={"email": email, "password": "Guess-passw0rd"}
            )
            for _ in range(11)
        ]
        assert [r.status_code for r in attempts[:10]] == [401] * 10
        problem(attempts[10], 429)
        assert 0 < int(attempts[10].headers["Retry-After"]) <= 900
        # While the window lasts the account's own password waits too (ADR 0006).
        own = owner.from_another_address().post(LOGIN, json={"email": email, "password": PASSWORD})
        problem(own, 429)


def test_successful_logins_do_not_spend_the_failure_limits(proxied_auth: str) -> None:
    with Api(proxied_auth, ip=new_ip()) as api:
        emails = [unique_email("regular") for _ in range(5)]
        for email in emails:
            assert register(api.from_another_address(), email) == 201
        # 25 logins from one address (over its 20 failures), 5 per account (the per-minute
        # limit of one address and e-mail) ...
        for email in emails:
            for _ in range(5):
                api.login(email, PASSWORD)
        # ... and 12 logins of one account (over its 10 failures) from other addresses.
        for _ in range(12):
            api.from_another_address().login(emails[0], PASSWORD)

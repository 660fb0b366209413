"""The auth service's pure rules: password policy, refresh-token rotation and reuse detection,
default roles, API keys and the other secrets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import jwt
import pytest

from services.auth import domain
from services.auth.domain import (
    DEFAULT_ROLES,
    PERMISSION_SLUGS,
    PERMISSIONS,
    RefreshOutcome,
    RefreshRecord,
)
from services.auth.tokens import generate_signing_key, public_jwk, thumbprint
from services.platform.core.rules import FieldError
from services.platform.http.versioning import etag, if_match_satisfied

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


# --- passwords and e-mail -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1a", "must be 8 to 128 characters long"),
        ("a1" * 64 + "x", "must be 8 to 128 characters long"),
        ("onlyletters", "must contain a letter and a digit"),
        ("1234567890", "must contain a letter and a digit"),
        ("xxMARIAxx1", "must not contain the e-mail address"),
    ],
)
def test_password_policy_rejects(password: str, message: str) -> None:
    errors = domain.password_errors(password, "Maria@example.com")
    assert FieldError("password", message) in errors
    assert all(error.field == "password" for error in errors)


@pytest.mark.parametrize("password", ["S3cure-passw0rd", "abcdefg9x", "Á" * 7 + "9", "a1" * 64])
def test_password_policy_accepts(password: str) -> None:
    assert domain.password_errors(password, "maria@example.com") == []


@pytest.mark.parametrize("password", ["password1", "Passw0rd", "QWERTY123", "1qaz2wsx", "abcdefg1"])
def test_common_passwords_are_refused_without_repeating_them(password: str) -> None:
    errors = domain.password_errors(password, "maria@example.com")
    assert errors == [
        FieldError(
            "password", "is one of the most commonly used passwords; choose a less guessable one"
        )
    ]
    assert password.lower() not in errors[0].message.lower()


def test_short_local_parts_are_not_checked_in_passwords() -> None:
    assert domain.password_errors("Jo-secret-1", "jo@example.com") == []


def test_several_violations_are_all_reported() -> None:
    messages = {e.message for e in domain.password_errors("maria", "maria@example.com")}
    assert messages == {
        "must be 8 to 128 characters long",
        "must contain a letter and a digit",
        "must not contain the e-mail address",
    }


def test_email_is_normalised_to_lower_case() -> None:
    assert domain.normalise_email("  Maria.Silva@Example.COM ") == "maria.silva@example.com"


@pytest.mark.parametrize("email", ["x@localhost", "a..b@example.com", "no-at-sign"])
def test_addresses_events_could_not_carry_are_refused(email: str) -> None:
    assert [e.field for e in domain.email_errors(email)] == ["email"]


def test_password_hash_is_argon2_and_verifies() -> None:
    hashed = domain.hash_password("S3cure-passw0rd")
    assert hashed.startswith("$argon2id$")
    assert domain.verify_password(hashed, "S3cure-passw0rd")
    assert not domain.verify_password(hashed, "S3cure-passw0rD")
    assert not domain.verify_password("not a hash", "S3cure-passw0rd")
    assert not domain.password_needs_rehash(hashed)


def test_unknown_user_never_verifies() -> None:
    # The dummy hash's own password must not open an account that has no hash.
    assert not domain.verify_password(None, "timing-equaliser-0")


# --- permissions and default roles ----------------------------------------------------------


def test_catalogue_is_design_slugs_plus_api_keys_and_audit() -> None:
    assert len(PERMISSION_SLUGS) == len(PERMISSIONS) == 32
    assert {"auth.api_keys.manage", "auth.audit.view", "auth.roles.manage"} <= PERMISSION_SLUGS
    for permission in PERMISSIONS:
        assert permission.slug == f"{permission.module}.{permission.resource}.{permission.action}"
        assert permission.description


def _role(slug: str) -> frozenset[str]:
    return next(role.permissions for role in DEFAULT_ROLES if role.slug == slug)


def test_default_roles() -> None:
    assert [role.slug for role in DEFAULT_ROLES] == [
        "super-admin",
        "admin",
        "manager",
        "sales",
        "stock-manager",
        "financial",
    ]
    assert _role("super-admin") == PERMISSION_SLUGS
    assert _role("admin") == PERMISSION_SLUGS - {"auth.roles.manage"}
    for role in DEFAULT_ROLES:
        assert role.permissions <= PERMISSION_SLUGS
        assert role.permissions, role.slug
    # Only super-admin can manage roles: anyone who can could grant themselves anything.
    assert [r.slug for r in DEFAULT_ROLES if "auth.roles.manage" in r.permissions] == [
        "super-admin"
    ]


def test_business_roles_fit_their_jobs() -> None:
    sales, stock, financial = _role("sales"), _role("stock-manager"), _role("financial")
    assert {"sales.orders.create", "sales.customers.create", "inventory.products.view"} <= sales
    assert not any(slug.startswith(("auth.", "financial.")) for slug in sales)
    assert {"inventory.stock.update", "inventory.products.delete"} <= stock
    assert {"financial.payments.refund", "financial.accounts.manage"} <= financial
    assert not any(slug.startswith(("auth.", "inventory.")) for slug in financial)
    manager = _role("manager")
    assert {slug for slug in PERMISSION_SLUGS if slug.endswith(".view")} - manager == {
        "auth.audit.view"
    }
    assert "sales.orders.cancel" in manager
    assert "auth.users.create" not in manager


def test_grantable_permissions() -> None:
    held = frozenset({"inventory.products.view", "sales.orders.view"})
    assert domain.grantable_errors(["inventory.products.view"], held) == []
    errors = domain.grantable_errors(["auth.users.fly", "sales.orders.create"], held)
    assert [e.message for e in errors] == [
        "unknown permission: auth.users.fly",
        "not held by the caller: sales.orders.create",
    ]


def test_a_keys_permissions_are_bounded_by_what_its_creator_holds_now() -> None:
    granted = ["auth.users.view", "inventory.stock.view"]
    holds = frozenset({"inventory.stock.view", "sales.orders.view"})
    assert domain.effective_key_permissions(granted, holds) == frozenset({"inventory.stock.view"})
    assert domain.effective_key_permissions(granted, frozenset()) == frozenset()
    assert domain.effective_key_permissions(granted, None) is None  # creator gone: refused


def test_a_key_made_by_a_key_never_outlives_it() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    later, much_later = now + timedelta(days=1), now + timedelta(days=2)
    parent = domain.ParentKey(id=uuid4(), created_by=uuid4(), expires_at=later)
    assert domain.key_expiry(None, now) == (None, [])
    assert domain.key_expiry(much_later, now) == (much_later, [])
    assert domain.key_expiry(None, now, parent=parent) == (later, [])  # inherited
    assert domain.key_expiry(now + timedelta(hours=1), now, parent=parent)[1] == []
    _, errors = domain.key_expiry(much_later, now, parent=parent)
    assert [error.field for error in errors] == ["expires_at"]
    assert "later than the expiry of the key creating it" in errors[0].message
    _, past = domain.key_expiry(now, now, parent=parent)
    assert past == [FieldError("expires_at", "must be in the future")]
    forever = domain.ParentKey(id=uuid4(), created_by=None, expires_at=None)
    assert domain.key_expiry(None, now, parent=forever) == (None, [])


# --- refresh tokens -------------------------------------------------------------------------


def _record(**changes: Any) -> RefreshRecord:
    base = RefreshRecord(
        id=uuid4(), user_id=uuid4(), family_id=uuid4(), expires_at=NOW + timedelta(days=1)
    )
    return replace(base, **changes)


def test_a_live_token_rotates_within_its_family() -> None:
    record = _record()
    assert domain.refresh_outcome(record, NOW) is RefreshOutcome.ROTATE
    successor_id = uuid4()
    retired, successor = domain.rotate(record, successor_id, NOW)
    assert retired.revoked_at == NOW
    assert retired.replaced_by == successor_id
    assert successor.id == successor_id
    assert successor.family_id == record.family_id
    assert successor.user_id == record.user_id
    assert successor.expires_at == NOW + domain.REFRESH_TOKEN_TTL
    assert domain.refresh_outcome(successor, NOW) is RefreshOutcome.ROTATE


def test_reusing_a_rotated_token_is_detected() -> None:
    retired, _ = domain.rotate(_record(), uuid4(), NOW)
    assert domain.refresh_outcome(retired, NOW) is RefreshOutcome.REUSED
    # Still theft when presented after it would have expired.
    assert domain.refresh_outcome(retired, NOW + timedelta(days=60)) is RefreshOutcome.REUSED
    with pytest.raises(ValueError, match="only a valid refresh token"):
        domain.rotate(retired, uuid4(), NOW)


def test_revoked_and_expired_tokens_are_refused() -> None:
    assert domain.refresh_outcome(_record(revoked_at=NOW), NOW) is RefreshOutcome.REVOKED
    assert domain.refresh_outcome(_record(expires_at=NOW), NOW) is RefreshOutcome.EXPIRED
    past = NOW - timedelta(seconds=1)
    assert domain.refresh_outcome(_record(expires_at=past), NOW) is RefreshOutcome.EXPIRED


def test_revoking_a_family_keeps_earlier_revocations() -> None:
    earlier = NOW - timedelta(hours=1)
    records = [_record(revoked_at=earlier, replaced_by=uuid4()), _record()]
    revoked = domain.revoke_family(records, NOW)
    assert [r.revoked_at for r in revoked] == [earlier, NOW]
    assert all(domain.refresh_outcome(r, NOW) is not RefreshOutcome.ROTATE for r in revoked)


# --- secrets, one-time tokens, ETags --------------------------------------------------------


def test_api_key_format_and_hash() -> None:
    created = domain.new_api_key()
    scheme, prefix, secret = created.key.split("_", 2)
    assert scheme == "erp"
    assert prefix == created.prefix
    assert len(prefix) == domain.API_KEY_PREFIX_LENGTH
    assert prefix.isalnum()
    assert len(secret) >= 43
    assert created.display_prefix == f"erp_{prefix}"
    assert created.key_hash == domain.token_hash(created.key)
    assert len(created.key_hash) == 64
    assert domain.api_key_prefix(created.key) == prefix
    assert domain.new_api_key().key != created.key


@pytest.mark.parametrize("raw", ["", "erp_short_x", "xyz_ABCDEFGH_secret", "erp_ABCDEFGH_", "rt_x"])
def test_malformed_api_keys_have_no_prefix(raw: str) -> None:
    assert domain.api_key_prefix(raw) is None


def test_tokens_are_random_and_hashed_with_sha256() -> None:
    token = domain.new_token()
    assert len(token) >= 43
    assert token != domain.new_token()
    assert domain.new_refresh_token().startswith("rt_")
    assert domain.token_hash("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert domain.same_hash(domain.token_hash(token), domain.token_hash(token))


def test_one_time_tokens() -> None:
    later = NOW + timedelta(minutes=1)
    assert domain.one_time_token_usable(later, None, NOW)
    assert not domain.one_time_token_usable(later, NOW, NOW)
    assert not domain.one_time_token_usable(NOW, None, NOW)


@pytest.mark.parametrize(
    ("if_match", "ok"),
    [(None, True), ('"3"', True), ("*", True), ('"1", "3"', True), ('"2"', False), ("3", False)],
)
def test_if_match(if_match: str | None, ok: bool) -> None:
    assert if_match_satisfied(if_match, 3) is ok
    assert etag(3) == '"3"'


def test_signing_key_jwk_and_kid() -> None:
    key = generate_signing_key(NOW)
    assert set(key.public_jwk) == {"kty", "kid", "use", "alg", "n", "e"}
    assert key.public_jwk["kid"] == key.kid == thumbprint(key.public_jwk)
    assert key.public_jwk["e"] == "AQAB"
    assert key.private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    # The JWK is the public half of the stored private key.
    token = jwt.encode({"sub": "x"}, key.private_pem, algorithm="RS256")
    public = jwt.PyJWK(key.public_jwk).key
    assert jwt.decode(token, public, algorithms=["RS256"]) == {"sub": "x"}
    assert public_jwk(public) == {k: key.public_jwk[k] for k in ("kty", "n", "e")}

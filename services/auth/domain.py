"""The auth service's rules, free of I/O: passwords, e-mail addresses, the permission catalogue
and the default roles, refresh-token rotation, and the secrets (tokens, API keys) we hand out.

Nothing here touches the database, Redis or HTTP; the commands apply these rules.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Final
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from services.platform import FieldError, api_key_digest
from services.platform import normalise_email as canonical_email

# --- lifetimes ------------------------------------------------------------------------------

ACCESS_TOKEN_TTL: Final = timedelta(minutes=15)
REFRESH_TOKEN_TTL: Final = timedelta(days=30)
EMAIL_VERIFICATION_TTL: Final = timedelta(hours=24)
PASSWORD_RESET_TTL: Final = timedelta(hours=1)


# --- e-mail addresses and passwords ---------------------------------------------------------

PASSWORD_MIN_LENGTH: Final = 8
PASSWORD_MAX_LENGTH: Final = 128
# A shorter local part ("jo@...") would forbid most passwords containing two common letters.
MIN_LOCAL_PART_CHECKED: Final = 3
# The 30,000 most common passwords (lower case; the xato list zxcvbn ships): the first that
# an attacker tries, whatever else they look like ("password1", "qwerty123", "passw0rd").
COMMON_PASSWORDS: Final = frozenset(FREQUENCY_LISTS["passwords"])


def normalise_email(email: str) -> str:
    """The stored form of an address, the unique key of a user: the platform's canonical form
    (NFC, Unicode domain, lower-case; ADR 0010). Every lookup and write goes through it."""
    return canonical_email(email)


def email_errors(email: str) -> list[FieldError]:
    """What the platform cannot accept as an address.

    The spec's regex lets through addresses that the event schemas (`format: email`, checked by
    pydantic/email-validator) reject, e.g. special-use domains; refuse them up front so that a
    user can never exist whose events could not be published.
    """
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        return [FieldError("email", f"is not a valid e-mail address: {error}")]
    return []


def password_errors(password: str, email: str | None = None) -> list[FieldError]:
    """Why `password` breaks the policy (empty when it is acceptable).

    8 to 128 characters, at least one letter and one digit, not containing the local part of
    the user's e-mail address (case-insensitive), and not one of the most common passwords
    (checked once the rest holds: the message never repeats the password).
    """
    errors: list[str] = []
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        errors.append(f"must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters long")
    if not (any(c.isalpha() for c in password) and any(c.isdigit() for c in password)):
        errors.append("must contain a letter and a digit")
    if email:
        local = normalise_email(email).split("@", 1)[0]
        if len(local) >= MIN_LOCAL_PART_CHECKED and local in password.lower():
            errors.append("must not contain the e-mail address")
    if not errors and password.lower() in COMMON_PASSWORDS:
        errors.append("is one of the most commonly used passwords; choose a less guessable one")
    return [FieldError("password", message) for message in errors]


# Parameters of argon2-cffi's RFC 9106 "low memory" profile (its default).
_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so that a failed login takes as long either way.
_DUMMY_HASH: Final = _hasher.hash("timing-equaliser-0")


def hash_password(password: str) -> str:
    """Argon2id hash (salted, encoded with its parameters). CPU-bound: call it off the loop."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash, burns the same time and answers False."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


# --- secrets --------------------------------------------------------------------------------

REFRESH_TOKEN_PREFIX: Final = "rt_"
API_KEY_SCHEME: Final = "erp"
API_KEY_PREFIX_LENGTH: Final = 8
_PREFIX_ALPHABET: Final = string.ascii_letters + string.digits
_API_KEY = re.compile(rf"^{API_KEY_SCHEME}_(?P<prefix>[A-Za-z0-9]{{{API_KEY_PREFIX_LENGTH}}})_.+$")


def new_token(nbytes: int = 32) -> str:
    """A random URL-safe secret (32 bytes → 43 characters)."""
    return secrets.token_urlsafe(nbytes)


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + new_token()


def token_hash(token: str) -> str:
    """SHA-256 hex of a high-entropy secret (refresh, verification, reset tokens, API keys).

    A fast hash is enough: the secrets are random 256-bit values, not guessable passwords, and
    lookups by hash must be cheap.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key: str  # the secret, shown once: erp_<prefix>_<secret>
    prefix: str  # the 8 characters that identify the key (stored, shown in lists)
    key_hash: str

    @property
    def display_prefix(self) -> str:
        return display_prefix(self.prefix)


def new_api_key() -> NewApiKey:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(API_KEY_PREFIX_LENGTH))
    key = f"{API_KEY_SCHEME}_{prefix}_{new_token()}"
    return NewApiKey(key=key, prefix=prefix, key_hash=api_key_digest(key))


def api_key_prefix(raw_key: str) -> str | None:
    """The prefix of a well-formed key (to find its row), None for anything else."""
    match = _API_KEY.match(raw_key)
    return match["prefix"] if match else None


def display_prefix(prefix: str) -> str:
    """How a key is recognised in lists: the start of the key, `erp_<prefix>`."""
    return f"{API_KEY_SCHEME}_{prefix}"


# --- permissions and roles ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PermissionDef:
    slug: str
    description: str

    @property
    def module(self) -> str:
        return self.slug.split(".")[0]

    @property
    def resource(self) -> str:
        return self.slug.split(".")[1]

    @property
    def action(self) -> str:
        return self.slug.split(".")[2]


def _catalogue(entries: Iterable[tuple[str, str]]) -> tuple[PermissionDef, ...]:
    return tuple(PermissionDef(slug, description) for slug, description in entries)


# DESIGN §5 plus auth.api_keys.manage and auth.audit.view (ADR 0001).
PERMISSIONS: Final = _catalogue(
    [
        ("auth.users.view", "View users"),
        ("auth.users.create", "Create users"),
        ("auth.users.update", "Update, activate and deactivate users"),
        ("auth.users.delete", "Delete (deactivate for good) users"),
        ("auth.roles.manage", "Manage roles, permissions and role assignments"),
        ("auth.api_keys.manage", "Manage partner API keys"),
        ("auth.audit.view", "View the security audit log"),
        ("inventory.products.view", "View products and categories"),
        ("inventory.products.create", "Create products and categories"),
        ("inventory.products.update", "Update products and categories"),
        ("inventory.products.delete", "Delete products and categories"),
        ("inventory.stock.view", "View stock levels and movements"),
        ("inventory.stock.update", "Receive and adjust stock"),
        ("sales.orders.view", "View orders"),
        ("sales.orders.create", "Create orders"),
        ("sales.orders.update", "Update orders"),
        ("sales.orders.cancel", "Cancel orders"),
        ("sales.customers.view", "View customers"),
        ("sales.customers.create", "Create customers"),
        ("sales.customers.update", "Update customers"),
        ("logistics.shipments.view", "View shipments and carriers"),
        ("logistics.shipments.create", "Create shipments and carriers"),
        ("logistics.shipments.update", "Update shipments and carriers"),
        ("financial.payments.view", "View payments"),
        ("financial.payments.process", "Process payments"),
        ("financial.payments.refund", "Refund payments"),
        ("financial.invoices.view", "View invoices"),
        ("financial.invoices.manage", "Generate, issue, send and cancel invoices"),
        ("financial.accounts.view", "View accounts payable and receivable, ledger"),
        ("financial.accounts.manage", "Manage accounts payable and receivable, ledger"),
        ("notification.notifications.view", "View notifications and templates"),
        ("notification.notifications.send", "Send and retry notifications"),
    ]
)
PERMISSION_SLUGS: Final = frozenset(p.slug for p in PERMISSIONS)


def _matching(*patterns: str) -> frozenset[str]:
    """Catalogue slugs matching any pattern; `*` stands for one whole segment."""
    compiled = [re.compile("^" + re.escape(p).replace(r"\*", "[^.]+") + "$") for p in patterns]
    return frozenset(slug for slug in PERMISSION_SLUGS if any(c.match(slug) for c in compiled))


SUPER_ADMIN: Final = "super-admin"


@dataclass(frozen=True, slots=True)
class RoleDef:
    slug: str
    name: str
    description: str
    permissions: frozenset[str]


# Only super-admin holds auth.roles.manage: whoever manages roles can grant themselves any
# permission, so admin gets everything else (and cannot assign roles when creating users).
DEFAULT_ROLES: Final = (
    RoleDef(SUPER_ADMIN, "Super administrator", "Every permission", PERMISSION_SLUGS),
    RoleDef(
        "admin",
        "Administrator",
        "Administers users, API keys and every business module; cannot manage roles",
        PERMISSION_SLUGS - {"auth.roles.manage"},
    ),
    RoleDef(
        "manager",
        "Manager",
        "Sees everything, runs sales and logistics",
        _matching("*.*.view", "sales.*.*", "logistics.shipments.*", "notification.*.send")
        - _matching("auth.audit.view"),
    ),
    RoleDef(
        "sales",
        "Sales",
        "Sales team: customers and orders",
        _matching(
            "inventory.products.view",
            "inventory.stock.view",
            "sales.customers.*",
            "sales.orders.view",
            "sales.orders.create",
            "sales.orders.update",
            "logistics.shipments.view",
        ),
    ),
    RoleDef(
        "stock-manager",
        "Stock manager",
        "Products, stock and shipments",
        _matching("inventory.*.*", "sales.orders.view", "logistics.shipments.*"),
    ),
    RoleDef(
        "financial",
        "Financial",
        "Payments, invoices and accounts",
        _matching("financial.*.*", "sales.orders.view", "sales.customers.view"),
    ),
)
SYSTEM_ROLE_SLUGS: Final = frozenset(role.slug for role in DEFAULT_ROLES)


def unknown(values: Iterable[str], known: Iterable[str]) -> list[str]:
    """The values not in `known`, sorted (for error messages)."""
    return sorted(set(values) - set(known))


def grantable_errors(requested: Iterable[str], held: frozenset[str]) -> list[FieldError]:
    """Why a caller holding `held` cannot hand out `requested` (an API key's permissions)."""
    errors = [
        FieldError("permissions", f"unknown permission: {slug}")
        for slug in unknown(requested, PERMISSION_SLUGS)
    ]
    errors += [
        FieldError("permissions", f"not held by the caller: {slug}")
        for slug in sorted(set(requested) & PERMISSION_SLUGS - held)
    ]
    return errors


def effective_key_permissions(
    granted: Iterable[str], creator_holds: frozenset[str] | None
) -> frozenset[str] | None:
    """What a partner key may do now: what it was granted, within what its creator holds
    today; None (the key is refused) when the creator is no longer an active user: deleted,
    deactivated, or never recorded (ADR 0005)."""
    return None if creator_holds is None else frozenset(granted) & creator_holds


def key_expiry(
    requested: datetime | None, now: datetime, *, parent: ParentKey | None = None
) -> tuple[datetime | None, list[FieldError]]:
    """When a new key expires, and why the request cannot have that (ADR 0005).

    A key created by another key (`parent`) never outlives it: without an `expires_at` it
    inherits the parent's, and a later one is refused rather than silently shortened.
    """
    if requested is not None and requested <= now:
        return requested, [FieldError("expires_at", "must be in the future")]
    if parent is None or parent.expires_at is None:
        return requested, []
    if requested is None:
        return parent.expires_at, []
    if requested > parent.expires_at:
        limit = parent.expires_at.isoformat()
        message = f"must not be later than the expiry of the key creating it ({limit})"
        return requested, [FieldError("expires_at", message)]
    return requested, []


@dataclass(frozen=True, slots=True)
class ParentKey:
    """The partner key that creates another key: the child's creator, parent and limits."""

    id: UUID
    created_by: UUID | None
    expires_at: datetime | None


# --- refresh tokens -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """What rotation needs to know about a stored refresh token."""

    id: UUID
    user_id: UUID
    family_id: UUID
    expires_at: datetime
    revoked_at: datetime | None = None
    replaced_by: UUID | None = None


class RefreshOutcome(Enum):
    ROTATE = "rotate"  # valid: issue a successor, retire this one
    REUSED = "reused"  # already rotated: a stolen copy is in use, revoke the whole family
    REVOKED = "revoked"  # logged out or family revoked
    EXPIRED = "expired"


def refresh_outcome(record: RefreshRecord, now: datetime) -> RefreshOutcome:
    """Decide what presenting `record` means.

    Reuse is checked first: a rotated token is also revoked, and its reappearance is the theft
    signal whether or not it has expired since.
    """
    if record.replaced_by is not None:
        return RefreshOutcome.REUSED
    if record.revoked_at is not None:
        return RefreshOutcome.REVOKED
    if record.expires_at <= now:
        return RefreshOutcome.EXPIRED
    return RefreshOutcome.ROTATE


def rotate(
    record: RefreshRecord, successor_id: UUID, now: datetime, ttl: timedelta = REFRESH_TOKEN_TTL
) -> tuple[RefreshRecord, RefreshRecord]:
    """(the retired record, its successor in the same family)."""
    if refresh_outcome(record, now) is not RefreshOutcome.ROTATE:
        raise ValueError("only a valid refresh token can be rotated")
    retired = replace(record, revoked_at=now, replaced_by=successor_id)
    successor = RefreshRecord(
        id=successor_id, user_id=record.user_id, family_id=record.family_id, expires_at=now + ttl
    )
    return retired, successor


def revoke_family(records: Sequence[RefreshRecord], now: datetime) -> list[RefreshRecord]:
    """Every still-live record of the family revoked (already revoked ones keep their time)."""
    return [r if r.revoked_at is not None else replace(r, revoked_at=now) for r in records]


# --- one-time tokens and optimistic concurrency ---------------------------------------------


class TokenPurpose(StrEnum):
    EMAIL_VERIFICATION = "email_verification"
    PASSWORD_RESET = "password_reset"


def one_time_token_usable(expires_at: datetime, used_at: datetime | None, now: datetime) -> bool:
    return used_at is None and expires_at > now

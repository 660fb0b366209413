"""The auth service's tables (SQLModel, in the service's own registry — see platform/tables.py).

The first migration (`migrations/versions/0001_initial.py`) creates exactly these; an
integration test compares the migrated database with this metadata.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, MetaData, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.platform import utc_timestamp


class AuthTable(SQLModel, registry=registry()):
    """Base of the auth tables; gives them their own MetaData."""


metadata: MetaData = AuthTable.metadata


def _fk(target: str, *, nullable: bool = False, ondelete: str | None = "CASCADE") -> Any:
    return Field(
        default=None if nullable else ...,
        sa_column=Column(ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True),
    )


class User(AuthTable, table=True):
    __tablename__ = "users"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=255)
    email: str = Field(max_length=254, unique=True)  # canonical form (domain.normalise_email)
    password_hash: str = Field(max_length=255)
    is_active: bool = True
    email_verified_at: datetime | None = utc_timestamp(nullable=True)
    # Deleted users stay (their e-mail stays taken, audit rows keep pointing at them) but are
    # gone from the API.
    deleted_at: datetime | None = utc_timestamp(nullable=True)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = 1


class Role(AuthTable, table=True):
    __tablename__ = "roles"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    slug: str = Field(max_length=50, unique=True)
    name: str = Field(max_length=100)
    description: str | None = Field(default=None, max_length=500)
    is_system: bool = False
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = 1


class Permission(AuthTable, table=True):
    __tablename__ = "permissions"

    slug: str = Field(primary_key=True, max_length=100)
    module: str = Field(max_length=30)
    resource: str = Field(max_length=30)
    action: str = Field(max_length=30)
    description: str = Field(max_length=255)


class RolePermission(AuthTable, table=True):
    __tablename__ = "role_permissions"

    role_id: UUID = Field(
        sa_column=Column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    )
    permission_slug: str = Field(
        sa_column=Column(
            ForeignKey("permissions.slug", ondelete="CASCADE"), primary_key=True, index=True
        )
    )


class UserRole(AuthTable, table=True):
    __tablename__ = "user_roles"

    user_id: UUID = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    )
    # RESTRICT: a role in use cannot be deleted (delete_role answers 409 before this fires).
    role_id: UUID = Field(
        sa_column=Column(ForeignKey("roles.id", ondelete="RESTRICT"), primary_key=True, index=True)
    )


class RefreshToken(AuthTable, table=True):
    """A refresh token (stored as its SHA-256). Rotation links a token to its successor;
    all tokens descending from one login share a family."""

    __tablename__ = "refresh_tokens"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID = _fk("users.id")
    token_hash: str = Field(max_length=64, unique=True)
    family_id: UUID = Field(index=True)
    parent_id: UUID | None = None
    # The jti of the access token issued with this refresh token: logout with the access
    # token alone finds its family, and a reused family's access tokens are blacklisted.
    access_token_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = utc_timestamp(nullable=False)
    expires_at: datetime = utc_timestamp(nullable=False)
    revoked_at: datetime | None = utc_timestamp(nullable=True)
    replaced_by: UUID | None = None


class OneTimeToken(AuthTable, table=True):
    """An e-mail verification or password reset token (stored as its SHA-256)."""

    __tablename__ = "one_time_tokens"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID = _fk("users.id")
    purpose: str = Field(max_length=30)  # domain.TokenPurpose
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = utc_timestamp(nullable=False)
    expires_at: datetime = utc_timestamp(nullable=False)
    used_at: datetime | None = utc_timestamp(nullable=True)


class ApiKey(AuthTable, table=True):
    """A partner API key: `erp_<prefix>_<secret>`, found by prefix, checked by SHA-256.
    Revoking it revokes the keys it created (`parent_id`), and theirs."""

    __tablename__ = "api_keys"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=255)
    prefix: str = Field(max_length=16, unique=True)
    key_hash: str = Field(max_length=64)
    permissions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Whose permissions bound the key's (ADR 0005): the user who created it, or who created
    # the key that created it (`parent_id`).
    created_by: UUID | None = _fk("users.id", nullable=True, ondelete="SET NULL")
    parent_id: UUID | None = _fk("api_keys.id", nullable=True, ondelete=None)
    created_at: datetime = utc_timestamp(nullable=False)
    expires_at: datetime | None = utc_timestamp(nullable=True)
    last_used_at: datetime | None = utc_timestamp(nullable=True)
    revoked_at: datetime | None = utc_timestamp(nullable=True)


class AuditEntry(AuthTable, table=True):
    """One security-relevant action. `seq` orders the log and is the keyset of its cursor;
    `id` is the public identifier."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action_seq", "action", "seq"),
        Index("ix_audit_log_actor_id_seq", "actor_id", "seq"),
        Index("ix_audit_log_subject_id_seq", "subject_id", "seq"),
    )

    # BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER primary key.
    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    id: UUID = Field(default_factory=uuid4, unique=True)
    action: str = Field(max_length=100)
    actor_id: UUID | None = None
    subject_id: UUID | None = None
    ip: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    occurred_at: datetime = utc_timestamp(nullable=False)


class SigningKey(AuthTable, table=True):
    """An RSA key pair that signs access tokens.

    The newest key without `retired_at` signs; a retired key stays in the JWKS until
    `expires_at` (when the last token it signed has expired), so rotation never breaks a
    session.
    """

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    private_pem: str = Field(sa_column=Column(Text, nullable=False))
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = utc_timestamp(nullable=False)
    retired_at: datetime | None = utc_timestamp(nullable=True)
    expires_at: datetime | None = utc_timestamp(nullable=True)

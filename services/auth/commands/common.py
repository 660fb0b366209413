"""What the auth commands share: the audit log, rate limits, the credential rules, password
hashing and the problems they answer with."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.auth import domain
from services.auth.tables import AuditEntry, RolePermission, User, UserRole
from services.platform import (
    Caller,
    Problem,
    ServiceContext,
    UnitOfWork,
    rate_limit,
    refund_rate_limit,
    unprocessable,
)

# --- who is calling -------------------------------------------------------------------------


def audit(
    uow: UnitOfWork,
    action: str,
    caller: Caller,
    *,
    subject_id: UUID | None = None,
    actor_id: UUID | None = None,
    **details: Any,
) -> None:
    """An audit-log row in the unit of work (a partner key acting is named in `details`)."""
    principal = caller.principal
    if principal is not None and principal.kind == "api_key":
        details = {"api_key_id": principal.subject, **details}
    uow.session.add(
        AuditEntry(
            action=action,
            actor_id=actor_id or caller.user_id,
            subject_id=subject_id,
            ip=caller.client_ip,
            details=details,
        )
    )


# --- rate limits (DESIGN §5; counted in Redis, so a request that fails still counts) --------


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    limit: int
    window_seconds: int

    async def hit(self, ctx: ServiceContext, *parts: object) -> None:
        """Count one request of the bucket `parts` (e.g. the client's address); 429 beyond."""
        await rate_limit(ctx.redis, self._key(ctx, parts), self.limit, self.window_seconds)

    async def refund(self, ctx: ServiceContext, *parts: object) -> None:
        """Take back this request's hit (a limit that counts only failed attempts)."""
        await refund_rate_limit(ctx.redis, self._key(ctx, parts))

    def _key(self, ctx: ServiceContext, parts: tuple[object, ...]) -> str:
        return ctx.keys("auth", "ratelimit", self.name, *parts)


# --- credentials ----------------------------------------------------------------------------


def email_taken() -> Problem:
    return Problem(409, detail="The e-mail address is already registered.")


def check_new_credentials(email: str, password: str | None) -> str:
    """The normalised address; 422 when it or the password breaks a rule."""
    normalised = domain.normalise_email(email)
    errors = domain.email_errors(normalised)
    if password is not None:
        errors += domain.password_errors(password, normalised)
    if errors:
        what = "password policy" if all(e.field == "password" for e in errors) else "rules"
        raise unprocessable(f"The request breaks the {what}; see errors.", errors)
    return normalised


def check_password(password: str, email: str) -> None:
    errors = domain.password_errors(password, email)
    if errors:
        raise unprocessable("The password does not meet the password policy.", errors)


async def hash_password(password: str) -> str:
    # Argon2 takes tens of milliseconds of CPU: keep the event loop free.
    return await asyncio.to_thread(domain.hash_password, password)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    found = await session.scalars(select(User).where(col(User.email) == email))
    return found.first()


async def permissions_of(session: AsyncSession, user_id: UUID) -> list[str]:
    """Every permission the user holds through its roles, sorted."""
    rows = await session.scalars(
        select(RolePermission.permission_slug)
        .join(UserRole, col(UserRole.role_id) == col(RolePermission.role_id))
        .where(col(UserRole.user_id) == user_id)
        .distinct()
    )
    return sorted(rows.all())


async def active_holdings(
    session: AsyncSession, user_ids: Iterable[UUID]
) -> dict[UUID, frozenset[str]]:
    """The permissions of each of these users who is still active (deleted and deactivated
    users are absent): what bounds the partner keys they created (ADR 0005)."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    active = await session.scalars(
        select(User.id).where(
            col(User.id).in_(wanted),
            col(User.is_active).is_(True),
            col(User.deleted_at).is_(None),
        )
    )
    holdings: dict[UUID, set[str]] = {user_id: set() for user_id in active.all()}
    if holdings:
        rows = await session.execute(
            select(UserRole.user_id, RolePermission.permission_slug)
            .join(UserRole, col(UserRole.role_id) == col(RolePermission.role_id))
            .where(col(UserRole.user_id).in_(holdings))
        )
        for user_id, slug in rows.all():
            holdings[user_id].add(slug)
    return {user_id: frozenset(slugs) for user_id, slugs in holdings.items()}


def touch(user: User, now: datetime) -> None:
    """The user changed: a new version (and ETag)."""
    user.updated_at = now
    user.version += 1

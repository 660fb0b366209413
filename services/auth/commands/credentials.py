"""The credentials auth hands out and takes back: one-time tokens (e-mail verification,
password reset), refresh tokens (rotating families) and access tokens (revoked in Redis).

Refresh and one-time tokens are rows, written in the command's unit of work. An access token
is a signed JWT; what remembers and revokes it lives in Redis and runs after the commit
(`uow.after_commit`), so a rolled-back request never revokes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final
from uuid import UUID, uuid4

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.auth import models
from services.auth import domain
from services.auth.commands.common import permissions_of
from services.auth.domain import TokenPurpose
from services.auth.tables import OneTimeToken, RefreshToken, User
from services.auth.tokens import signing_keys
from services.platform import TOKEN_LEEWAY, ServiceContext, UnitOfWork, utc_now

# How long after it is issued an access token may still pass a verifier: its lifetime plus
# the clock-skew leeway verifiers allow.
ACCESS_TOKEN_LIVES_AT_MOST: Final = domain.ACCESS_TOKEN_TTL + TOKEN_LEEWAY

# --- one-time tokens ------------------------------------------------------------------------


async def issue_one_time_token(
    session: AsyncSession, user: User, purpose: TokenPurpose, ttl: timedelta, now: datetime
) -> tuple[str, datetime]:
    """A new token of `purpose` and its expiry; earlier unused ones of the purpose stop working."""
    await session.execute(
        update(OneTimeToken)
        .where(
            col(OneTimeToken.user_id) == user.id,
            col(OneTimeToken.purpose) == purpose.value,
            col(OneTimeToken.used_at).is_(None),
        )
        .values(used_at=now)
    )
    token = domain.new_token()
    expires_at = now + ttl
    session.add(
        OneTimeToken(
            user_id=user.id,
            purpose=purpose.value,
            token_hash=domain.token_hash(token),
            created_at=now,
            expires_at=expires_at,
        )
    )
    return token, expires_at


async def consume_one_time_token(
    session: AsyncSession, token: str, purpose: TokenPurpose, now: datetime
) -> User | None:
    """The live user the token belongs to, marking the token used; None when unusable."""
    row = (
        await session.scalars(
            select(OneTimeToken)
            .where(
                col(OneTimeToken.token_hash) == domain.token_hash(token),
                col(OneTimeToken.purpose) == purpose.value,
            )
            .with_for_update()
        )
    ).first()
    if row is None or not domain.one_time_token_usable(row.expires_at, row.used_at, now):
        return None
    user = await session.get(User, row.user_id)
    if user is None or user.deleted_at is not None:
        return None
    row.used_at = now
    return user


# --- sessions: a refresh token row and an access token --------------------------------------


async def new_session_tokens(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user: User,
    now: datetime,
    *,
    roles: Sequence[str],
    parent: RefreshToken | None = None,
) -> models.TokenPair:
    """A refresh token row (a new family, or the successor of `parent`) and an access token
    whose jti is remembered (for revocation) once the unit of work commits."""
    raw_refresh = domain.new_refresh_token()
    row = RefreshToken(
        user_id=user.id,
        token_hash=domain.token_hash(raw_refresh),
        family_id=parent.family_id if parent else uuid4(),
        parent_id=parent.id if parent else None,
        created_at=now,
        expires_at=now + domain.REFRESH_TOKEN_TTL,
    )
    if parent is not None:
        retired, _ = domain.rotate(refresh_record(parent), row.id, now)
        parent.revoked_at, parent.replaced_by = retired.revoked_at, retired.replaced_by
    permissions = await permissions_of(uow.session, user.id)
    access = await signing_keys(ctx).issue(
        subject=user.id, roles=roles, permissions=permissions, now=now
    )
    row.access_token_id = access.jti
    uow.session.add(row)
    uow.after_commit(partial(_remember_issued, ctx, user.id, access.jti, access.expires_at))
    return models.TokenPair(
        access_token=access.token,
        refresh_token=raw_refresh,
        token_type="Bearer",
        expires_in=access.expires_in,
    )


def refresh_record(row: RefreshToken) -> domain.RefreshRecord:
    """What the rotation rules (`domain.refresh_outcome`, `domain.rotate`) look at."""
    return domain.RefreshRecord(
        id=row.id,
        user_id=row.user_id,
        family_id=row.family_id,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        replaced_by=row.replaced_by,
    )


async def revoke_refresh_tokens(
    session: AsyncSession,
    now: datetime,
    *,
    user_id: UUID | None = None,
    family_id: UUID | None = None,
) -> None:
    statement = update(RefreshToken).where(col(RefreshToken.revoked_at).is_(None))
    if user_id is not None:
        statement = statement.where(col(RefreshToken.user_id) == user_id)
    if family_id is not None:
        statement = statement.where(col(RefreshToken.family_id) == family_id)
    await session.execute(statement.values(revoked_at=now))


async def end_family(ctx: ServiceContext, uow: UnitOfWork, family_id: UUID, now: datetime) -> None:
    """One session ends (logout, or a refresh token reused): its refresh tokens in the
    transaction, and once it commits every access token issued in it that may still be live,
    not only the one presented."""
    await revoke_refresh_tokens(uow.session, now, family_id=family_id)
    issued = await uow.session.scalars(
        select(RefreshToken.access_token_id).where(
            col(RefreshToken.family_id) == family_id,
            col(RefreshToken.created_at) > now - ACCESS_TOKEN_LIVES_AT_MOST,
            col(RefreshToken.access_token_id).is_not(None),
        )
    )
    latest_exp = now + domain.ACCESS_TOKEN_TTL  # no access token of the family expires later
    for jti in issued.all():
        if jti is not None:
            uow.after_commit(partial(blacklist, ctx, jti, latest_exp))


async def family_of_access_token(session: AsyncSession, user_id: UUID, jti: str) -> UUID | None:
    """The session (refresh-token family) the user's access token `jti` was issued in."""
    found = await session.scalars(
        select(RefreshToken.family_id).where(
            col(RefreshToken.access_token_id) == jti, col(RefreshToken.user_id) == user_id
        )
    )
    return found.first()


async def end_sessions(ctx: ServiceContext, uow: UnitOfWork, user_id: UUID, now: datetime) -> None:
    """Every session of the user ends: its refresh tokens in the transaction, its access tokens
    once it commits (password change or reset, deactivation, deletion)."""
    await revoke_refresh_tokens(uow.session, now, user_id=user_id)
    uow.after_commit(partial(revoke_access_tokens, ctx, user_id))


# --- access tokens in Redis -----------------------------------------------------------------


def _issued_key(ctx: ServiceContext, user_id: UUID) -> str:
    return ctx.keys("auth", "issued", user_id)


async def _remember_issued(ctx: ServiceContext, user_id: UUID, jti: str, exp: datetime) -> None:
    """Track the user's live access tokens so that deactivation can blacklist them all."""
    key = _issued_key(ctx, user_id)
    now = utc_now().timestamp()
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {jti: exp.timestamp()})
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.expireat(key, int(exp.timestamp()) + 1)
        await pipe.execute()


async def blacklist(ctx: ServiceContext, jti: str, exp: datetime) -> None:
    """Refuse one access token until no verifier would accept it any more: its `exp` plus the
    verifiers' clock-skew leeway (the kit checks the blacklist)."""
    ttl = max(1, int((exp + TOKEN_LEEWAY - utc_now()).total_seconds()) + 1)
    await ctx.redis.set(ctx.keys("auth", "blacklist", jti), "1", ex=ttl)


async def revoke_access_tokens(ctx: ServiceContext, user_id: UUID) -> None:
    """Blacklist every access token the user holds (deactivation, deletion, reset, roles)."""
    now = utc_now().timestamp()
    entries: list[tuple[str, float]] = await ctx.redis.zrangebyscore(  # type: ignore[assignment]
        _issued_key(ctx, user_id), now, "+inf", withscores=True
    )
    for jti, exp in entries:
        await blacklist(ctx, str(jti), datetime.fromtimestamp(float(exp), tz=UTC))
    await ctx.redis.delete(_issued_key(ctx, user_id))

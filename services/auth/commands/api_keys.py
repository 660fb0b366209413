"""Partner API keys: create (a subset of the creator's permissions, the secret shown once) and
revoke; their publication to shared Redis, where every other service verifies them (ADR 0002);
and the kit's `ApiKeyVerifier` with which auth checks them against its own database.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Final
from uuid import UUID

from pydantic import MISSING
from sqlalchemy import update
from sqlmodel import col, select

from generated.auth import models
from services.auth import domain
from services.auth.commands.common import audit, unprocessable
from services.auth.queries import as_created_api_key, live_api_key
from services.auth.tables import ApiKey
from services.platform import (
    Caller,
    FieldError,
    Principal,
    Problem,
    PublishedApiKey,
    ServiceContext,
    UnitOfWork,
    api_key_digest,
    utc_now,
)

# A key's last_used_at is written at most this often: not one UPDATE per partner request.
LAST_USED_RESOLUTION: Final = timedelta(minutes=1)


async def create_api_key(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, body: models.ApiKeyCreate
) -> models.ApiKeyCreated:
    permissions = sorted({permission.root for permission in body.permissions})
    expires_at = None if body.expires_at is MISSING else body.expires_at
    now = utc_now()
    errors = domain.grantable_errors(permissions, caller.permissions)
    if expires_at is not None and expires_at <= now:
        errors.append(FieldError("expires_at", "must be in the future"))
    if errors:
        not_held = sorted(set(permissions) & domain.PERMISSION_SLUGS - caller.permissions)
        detail = (
            f"You cannot grant a permission you do not hold: {', '.join(not_held)}"
            if not_held
            else f"{errors[0].field}: {errors[0].message}"
        )
        raise unprocessable(detail, errors)
    secret = domain.new_api_key()
    api_key = ApiKey(
        name=body.name,
        prefix=secret.prefix,
        key_hash=secret.key_hash,
        permissions=permissions,
        created_by=caller.user_id,
        created_at=now,
        expires_at=expires_at,
    )
    uow.session.add(api_key)
    audit(
        uow,
        "auth.api_key.created",
        caller,
        subject_id=api_key.id,
        name=body.name,
        prefix=secret.display_prefix,
        permissions=permissions,
    )
    await uow.session.flush()
    uow.after_commit(partial(publish_api_keys, ctx))  # usable on every service at once
    return as_created_api_key(api_key, secret.key)


async def revoke_api_key(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, api_key_id: UUID
) -> None:
    api_key = await live_api_key(uow.session, api_key_id)
    if caller.principal is not None and caller.principal.subject == str(api_key.id):
        raise Problem(409, detail="A key cannot revoke itself; use another credential.")
    api_key.revoked_at = utc_now()
    audit(
        uow,
        "auth.api_key.revoked",
        caller,
        subject_id=api_key.id,
        prefix=domain.display_prefix(api_key.prefix),
    )
    uow.after_commit(partial(publish_api_keys, ctx))  # refused on every service at once


async def publish_api_keys(ctx: ServiceContext) -> None:
    """Mirror the active partner keys into shared Redis, where every other service verifies
    them (the kit's `PublishedApiKeys`); drop the revoked and expired ones; fold the other
    services' last-use marks into `last_used_at`.

    Runs at start-up, every half minute (a flushed Redis heals itself) and right after a key
    is created or revoked.
    """
    now = utc_now()
    async with ctx.database.session() as session:
        keys = (await session.scalars(select(ApiKey).where(col(ApiKey.revoked_at).is_(None)))).all()
        live = {key.key_hash: key for key in keys if key.expires_at is None or key.expires_at > now}
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for key_hash, key in live.items():
                expires = key.expires_at
                published = PublishedApiKey(str(key.id), tuple(key.permissions), expires)
                ttl_ms = int((expires - now).total_seconds() * 1000) if expires else None
                pipe.set(ctx.keys("auth", "api_key", key_hash), published.dumps(), px=ttl_ms)
            await pipe.execute()
        stale = [
            name
            async for name in ctx.redis.scan_iter(match=ctx.keys("auth", "api_key", "*"))
            if str(name).rsplit(":", 1)[-1] not in live
        ]
        if stale:
            await ctx.redis.delete(*stale)
        for key in live.values():
            used = await ctx.redis.get(ctx.keys("auth", "api_key_used", str(key.id)))
            if used is None:
                continue
            used_at = datetime.fromisoformat(str(used))
            if key.last_used_at is None or key.last_used_at < used_at:
                key.last_used_at = used_at
        await session.commit()


class DatabaseApiKeyVerifier:
    """The kit's `ApiKeyVerifier` for auth itself: a key is valid while not revoked and not
    expired; its use is recorded in `last_used_at` (at most once a minute)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def verify(self, raw_key: str) -> Principal | None:
        prefix = domain.api_key_prefix(raw_key)
        if prefix is None:
            return None
        now = utc_now()
        async with self.ctx.database.session() as session:
            found = await session.scalars(select(ApiKey).where(col(ApiKey.prefix) == prefix))
            api_key = found.first()
            if api_key is None or api_key.revoked_at is not None:
                return None
            if not domain.same_hash(api_key.key_hash, api_key_digest(raw_key)):
                return None
            if api_key.expires_at is not None and api_key.expires_at <= now:
                return None
            last_used = api_key.last_used_at
            if last_used is None or last_used <= now - LAST_USED_RESOLUTION:
                await session.execute(
                    update(ApiKey).where(col(ApiKey.id) == api_key.id).values(last_used_at=now)
                )
                await session.commit()
        return Principal(
            subject=str(api_key.id),
            kind="api_key",
            permissions=frozenset(api_key.permissions),
            expires_at=api_key.expires_at,
        )

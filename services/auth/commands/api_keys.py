"""Partner API keys: create (a subset of the creator's permissions, the secret shown once) and
revoke; their publication to shared Redis, where every other service verifies them (ADR 0002);
and the kit's `ApiKeyVerifier` with which auth checks them against its own database.

A key never does more than its creator may do now (ADR 0005): what is published, and what
auth checks, is the key's permissions within those its creator currently holds, and nothing at
all once the creator is deleted or deactivated. A key may create keys: the child records its
parent, belongs to the same creator, holds a subset of the parent's permissions, expires no
later than the parent, and is revoked with it.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from functools import partial
from typing import Final
from uuid import UUID, uuid4

from pydantic import MISSING
from redis.exceptions import WatchError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.auth import models
from services.auth import domain
from services.auth.commands.common import active_holdings, audit
from services.auth.queries import as_created_api_key, live_api_key
from services.auth.tables import ApiKey
from services.platform import (
    Caller,
    Principal,
    Problem,
    PublishedApiKey,
    ServiceContext,
    UnitOfWork,
    api_key_digest,
    parse_uuid,
    unauthorized,
    unprocessable,
    utc_now,
)

# A key's last_used_at is written at most this often: not one UPDATE per partner request.
LAST_USED_RESOLUTION: Final = timedelta(minutes=1)

log = logging.getLogger("services.auth.api_keys")


async def create_api_key(
    ctx: ServiceContext,
    uow: UnitOfWork,
    caller: Caller,
    body: models.ApiKeyCreate,
    *,
    new_id: UUID | None = None,
) -> models.ApiKeyCreated:
    permissions = sorted({permission.root for permission in body.permissions})
    requested_expiry = None if body.expires_at is MISSING else body.expires_at
    now = utc_now()
    parent = await _calling_key(uow.session, caller)
    errors = domain.grantable_errors(permissions, caller.permissions)
    expires_at, expiry_errors = domain.key_expiry(requested_expiry, now, parent=parent)
    errors += expiry_errors
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
        id=new_id or uuid4(),
        name=body.name,
        prefix=secret.prefix,
        key_hash=secret.key_hash,
        permissions=permissions,
        created_by=parent.created_by if parent else caller.user_id,
        parent_id=parent.id if parent else None,
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
        parent_id=str(parent.id) if parent else None,
    )
    await uow.session.flush()
    uow.after_commit(partial(publish_api_keys, ctx))  # usable on every service at once
    return as_created_api_key(api_key, secret.key)


async def _calling_key(session: AsyncSession, caller: Caller) -> domain.ParentKey | None:
    """The partner key making the request, locked (so that its revocation, which locks it
    too, either sees the child created now or refuses this request); None for a user."""
    principal = caller.principal
    if principal is None or principal.kind != "api_key":
        return None
    key_id = parse_uuid(principal.subject)
    row = await session.get(ApiKey, key_id, with_for_update=True) if key_id else None
    if row is None or row.revoked_at is not None:
        raise unauthorized("The API key has been revoked.")
    return domain.ParentKey(id=row.id, created_by=row.created_by, expires_at=row.expires_at)


async def revoke_api_key(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, api_key_id: UUID
) -> None:
    api_key = await live_api_key(uow.session, api_key_id, lock=True)
    now = utc_now()
    descendants = await _live_descendants(uow.session, [api_key.id])
    principal = caller.principal
    revoked = {str(key.id) for key in [api_key, *descendants]}
    if principal is not None and principal.kind == "api_key" and principal.subject in revoked:
        raise Problem(
            409,
            detail="A key cannot revoke itself or a key it descends from; use another credential.",
        )
    api_key.revoked_at = now
    audit(
        uow,
        "auth.api_key.revoked",
        caller,
        subject_id=api_key.id,
        prefix=domain.display_prefix(api_key.prefix),
    )
    _revoke_with(uow, caller, descendants, now, reason="parent_revoked")
    uow.after_commit(partial(publish_api_keys, ctx))  # refused on every service at once


async def revoke_keys_created_by(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, user_id: UUID, now: datetime
) -> None:
    """A deleted user's keys go with it (a deactivated user's are only suspended: ADR 0005)."""
    keys = await uow.session.scalars(
        select(ApiKey)
        .where(col(ApiKey.created_by) == user_id, col(ApiKey.revoked_at).is_(None))
        .with_for_update()
    )
    _revoke_with(uow, caller, list(keys.all()), now, reason="creator_deleted")
    uow.after_commit(partial(api_keys_changed, ctx))


def _revoke_with(
    uow: UnitOfWork, caller: Caller, keys: list[ApiKey], now: datetime, *, reason: str
) -> None:
    for key in keys:
        key.revoked_at = now
        prefix = domain.display_prefix(key.prefix)
        audit(uow, "auth.api_key.revoked", caller, subject_id=key.id, prefix=prefix, reason=reason)


async def _live_descendants(session: AsyncSession, roots: list[UUID]) -> list[ApiKey]:
    """Every unrevoked key created, directly or not, by one of `roots`, locked."""
    found: list[ApiKey] = []
    generation = roots
    while generation:
        children = (
            await session.scalars(
                select(ApiKey)
                .where(col(ApiKey.parent_id).in_(generation), col(ApiKey.revoked_at).is_(None))
                .with_for_update()
            )
        ).all()
        found += children
        generation = [child.id for child in children]
    return found


# --- publication to shared Redis ------------------------------------------------------------


def _generation_key(ctx: ServiceContext) -> str:
    return ctx.keys("auth", "api_keys_generation")


async def api_keys_changed(ctx: ServiceContext) -> None:
    """After-commit hook of every change that alters what partner keys may do without touching
    the keys themselves (a creator's roles, a role's permissions, a creator's deactivation).

    Bumping the generation first aborts any publication that read the database before this
    change committed and has not written yet (`KeyPublication`).
    """
    await ctx.redis.incr(_generation_key(ctx))
    await publish_api_keys(ctx)


async def publish_api_keys(ctx: ServiceContext) -> None:
    """Mirror the active partner keys, with the permissions they have now, into shared Redis,
    where every other service verifies them (the kit's `PublishedApiKeys`); drop the revoked
    and expired ones and those of a dismissed creator; fold the other services' last-use marks
    into `last_used_at`.

    Runs at start-up, every half minute (a flushed Redis heals itself), right after a key is
    created or revoked, and after anything that changes what a key's creator holds
    (`api_keys_changed`).
    """
    async with KeyPublication(ctx) as publication:
        if not await publication.write():
            log.info("API keys changed while being published; the change publishes them")
        await publication.fold_last_use()


class KeyPublication:
    """One publication of the keys: what the database holds on entry, written by `write()`
    unless a change committed in between.

    The generation counter is watched *before* the database is read, and `write()` is a
    MULTI/EXEC: a change that committed after the read bumped the generation
    (`api_keys_changed`), so the EXEC fails and the change's own publication, which reads after
    its commit, is the one that counts. A slow publication can never write back what a change
    took away.
    """

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._stack = AsyncExitStack()
        self.published: dict[str, tuple[ApiKey, frozenset[str]]] = {}

    async def __aenter__(self) -> KeyPublication:
        self._pipe = await self._stack.enter_async_context(
            self.ctx.redis.pipeline(transaction=True)
        )
        await self._pipe.watch(_generation_key(self.ctx))
        self._session = await self._stack.enter_async_context(self.ctx.database.session())
        self.now = utc_now()
        self.published = await _publishable(self._session, self.now)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def write(self) -> bool:
        """Mirror what was read into Redis; False, writing nothing, when keys changed since."""
        ctx, pipe, now = self.ctx, self._pipe, self.now
        stale = [
            name
            async for name in ctx.redis.scan_iter(match=ctx.keys("auth", "api_key", "*"))
            if str(name).rsplit(":", 1)[-1] not in self.published
        ]
        pipe.multi()  # type: ignore[no-untyped-call]
        for key_hash, (key, permissions) in self.published.items():
            expires = key.expires_at
            entry = PublishedApiKey(str(key.id), tuple(sorted(permissions)), expires)
            ttl_ms = int((expires - now).total_seconds() * 1000) if expires else None
            pipe.set(ctx.keys("auth", "api_key", key_hash), entry.dumps(), px=ttl_ms)
        if stale:
            pipe.delete(*stale)
        try:
            await pipe.execute()
        except WatchError:
            return False
        return True

    async def fold_last_use(self) -> None:
        """The other services' last-use marks into `last_used_at`."""
        for key, _ in self.published.values():
            used = await self.ctx.redis.get(self.ctx.keys("auth", "api_key_used", str(key.id)))
            if used is None:
                continue
            used_at = datetime.fromisoformat(str(used))
            if key.last_used_at is None or key.last_used_at < used_at:
                key.last_used_at = used_at
        await self._session.commit()


async def _publishable(
    session: AsyncSession, now: datetime
) -> dict[str, tuple[ApiKey, frozenset[str]]]:
    """The keys valid now, by hash, with what each may do (`domain.effective_key_permissions`)."""
    keys = (await session.scalars(select(ApiKey).where(col(ApiKey.revoked_at).is_(None)))).all()
    live = [key for key in keys if key.expires_at is None or key.expires_at > now]
    holdings = await active_holdings(session, {k.created_by for k in live if k.created_by})
    publishable: dict[str, tuple[ApiKey, frozenset[str]]] = {}
    for key in live:
        held = holdings.get(key.created_by) if key.created_by else None
        permissions = domain.effective_key_permissions(key.permissions, held)
        if permissions is not None:
            publishable[key.key_hash] = (key, permissions)
    return publishable


class DatabaseApiKeyVerifier:
    """The kit's `ApiKeyVerifier` for auth itself: a key is valid while not revoked, not
    expired and its creator active, with the permissions its creator still holds; its use is
    recorded in `last_used_at` (at most once a minute)."""

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
            creator = api_key.created_by
            held = (await active_holdings(session, [creator])).get(creator) if creator else None
            permissions = domain.effective_key_permissions(api_key.permissions, held)
            if permissions is None:  # its creator was deleted or deactivated
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
            permissions=permissions,
            expires_at=api_key.expires_at,
        )

"""Users, as administrators manage them: create, update, delete (deactivate for good),
activate and deactivate, replace the roles; and the first super-admin (`erp users
create-admin`).

Nobody manages an account that holds permissions they lack, removes their own account or
roles, or the last active super-admin. Changes that end a user's sessions revoke its refresh
tokens in the transaction and blacklist its access tokens once it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.auth import models
from generated.events import publishers as events
from generated.events.models import (
    AuthUserActivatedPayload,
    AuthUserDeactivatedPayload,
    AuthUserDeletedPayload,
)
from services.auth import domain
from services.auth.commands import user_events
from services.auth.commands.api_keys import api_keys_changed, revoke_keys_created_by
from services.auth.commands.common import (
    audit,
    check_new_credentials,
    check_password,
    email_taken,
    hash_password,
    permissions_of,
    touch,
    user_by_email,
)
from services.auth.commands.credentials import (
    end_sessions,
    issue_one_time_token,
    revoke_access_tokens,
)
from services.auth.domain import TokenPurpose
from services.auth.queries import as_user, live_user, roles_of, user_model
from services.auth.tables import Role, User, UserRole
from services.platform import (
    Caller,
    FieldError,
    Problem,
    ServiceContext,
    UnitOfWork,
    flush_unique,
    require_if_match,
    unprocessable,
    utc_now,
)


async def create_user(
    uow: UnitOfWork, caller: Caller, body: models.UserCreate, *, new_id: UUID | None = None
) -> models.User:
    roles = [] if body.roles is MISSING else [slug.root for slug in body.roles]
    # Assigning roles is role management: without this check auth.users.create would be a
    # way to mint a super-admin.
    if roles and "auth.roles.manage" not in caller.permissions:
        raise Problem(403, detail="Missing permission: auth.roles.manage (to assign roles)")
    password = body.password.get_secret_value()
    email = check_new_credentials(body.email, password)
    session = uow.session
    role_ids = await _role_ids(session, roles)
    if await user_by_email(session, email) is not None:
        raise email_taken()
    password_hash = await hash_password(password)
    now = utc_now()
    user = User(
        id=new_id or uuid4(),
        name=body.name,
        email=email,
        password_hash=password_hash,
        is_active=body.is_active,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    await flush_unique(session, email_taken())
    for role_id in role_ids.values():
        session.add(UserRole(user_id=user.id, role_id=role_id))
    token, expires_at = await issue_one_time_token(
        session, user, TokenPurpose.EMAIL_VERIFICATION, domain.EMAIL_VERIFICATION_TTL, now
    )
    user_events.registered(uow, user, token, expires_at)
    audit(uow, "auth.user.created", caller, subject_id=user.id, roles=sorted(roles))
    await session.flush()
    return as_user(user, roles)


async def update_user(
    ctx: ServiceContext,
    uow: UnitOfWork,
    caller: Caller,
    user_id: UUID,
    body: models.UserUpdate,
    *,
    if_match: str | None,
) -> models.User:
    now = utc_now()
    session = uow.session
    user = await live_user(session, user_id, lock=True)
    require_if_match(if_match, user.version)
    await _guard_outranking(session, caller, user)
    changed: list[str] = []
    new_email = user.email if body.email is MISSING else domain.normalise_email(body.email)
    if new_email != user.email:
        check_new_credentials(new_email, None)
        if await user_by_email(session, new_email) is not None:
            raise email_taken()
    if body.password is not MISSING:
        password = body.password.get_secret_value()
        check_password(password, new_email)
        user.password_hash = await hash_password(password)
        changed.append("password")
    if body.name is not MISSING and body.name != user.name:
        user.name = body.name
        changed.append("name")
    if new_email != user.email:
        user.email = new_email
        user.email_verified_at = None  # the new address has to be verified again
        changed.append("email")
    if not changed:
        return await user_model(session, user)
    touch(user, now)
    await flush_unique(session, email_taken())
    if "email" in changed:
        token, expires_at = await issue_one_time_token(
            session, user, TokenPurpose.EMAIL_VERIFICATION, domain.EMAIL_VERIFICATION_TTL, now
        )
        user_events.verification_requested(uow, user, token, expires_at)
    if "password" in changed:
        await end_sessions(ctx, uow, user.id, now)
    roles = (await roles_of(session, [user.id]))[user.id]
    user_events.updated(uow, user, roles, changed)
    audit(uow, "auth.user.updated", caller, subject_id=user.id, changed_fields=changed)
    return as_user(user, roles)


async def delete_user(ctx: ServiceContext, uow: UnitOfWork, caller: Caller, user_id: UUID) -> None:
    now = utc_now()
    session = uow.session
    user = await live_user(session, user_id, lock=True)
    await _guard_outranking(session, caller, user)
    await _guard_removal(session, caller, user, "delete")
    user.deleted_at = now
    user.is_active = False
    touch(user, now)
    # Its roles go with it, so that a role it held can be deleted.
    await session.execute(delete(UserRole).where(col(UserRole.user_id) == user.id))
    await end_sessions(ctx, uow, user.id, now)
    await revoke_keys_created_by(ctx, uow, caller, user.id, now)
    events.publish_auth_user_deleted(
        uow, AuthUserDeletedPayload(user_id=user.id, email=user.email, deleted_at=now)
    )
    audit(uow, "auth.user.deleted", caller, subject_id=user.id)


async def activate_user(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, user_id: UUID
) -> models.User:
    """Idempotent: an active user stays as it is, and no event goes out. The partner keys
    the user created work again (those not revoked or expired meanwhile)."""
    now = utc_now()
    user = await live_user(uow.session, user_id, lock=True)
    await _guard_outranking(uow.session, caller, user)
    if not user.is_active:
        user.is_active = True
        touch(user, now)
        events.publish_auth_user_activated(
            uow, AuthUserActivatedPayload(user_id=user.id, email=user.email, occurred_at=now)
        )
        audit(uow, "auth.user.activated", caller, subject_id=user.id)
        uow.after_commit(partial(api_keys_changed, ctx))
    return await user_model(uow.session, user)


async def deactivate_user(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, user_id: UUID
) -> models.User:
    """Idempotent, as `activate_user`; the user's sessions end and the partner keys it
    created stop working (suspended until it is activated again)."""
    now = utc_now()
    user = await live_user(uow.session, user_id, lock=True)
    await _guard_outranking(uow.session, caller, user)
    await _guard_removal(uow.session, caller, user, "deactivate")
    if user.is_active:
        user.is_active = False
        touch(user, now)
        await end_sessions(ctx, uow, user.id, now)
        uow.after_commit(partial(api_keys_changed, ctx))
        events.publish_auth_user_deactivated(
            uow, AuthUserDeactivatedPayload(user_id=user.id, email=user.email, occurred_at=now)
        )
        audit(uow, "auth.user.deactivated", caller, subject_id=user.id)
    return await user_model(uow.session, user)


async def set_user_roles(
    ctx: ServiceContext,
    uow: UnitOfWork,
    caller: Caller,
    user_id: UUID,
    body: models.UserRolesUpdate,
) -> models.User:
    slugs = [slug.root for slug in body.roles]
    session = uow.session
    user = await live_user(session, user_id, lock=True)
    role_ids = await _role_ids(session, slugs)
    before = (await roles_of(session, [user.id]))[user.id]
    after = sorted(set(slugs))
    if before == after:
        return as_user(user, before)
    if domain.SUPER_ADMIN not in after and await _is_last_super_admin(session, user):
        raise Problem(409, detail="The last active super-admin cannot lose the super-admin role.")
    if caller.user_id == user.id and set(before) - set(after):
        # As with deactivating or deleting oneself: a slip would lock the caller out at once.
        raise Problem(409, detail="You cannot take roles away from your own account.")
    await session.execute(delete(UserRole).where(col(UserRole.user_id) == user.id))
    for slug in after:
        session.add(UserRole(user_id=user.id, role_id=role_ids[slug]))
    touch(user, utc_now())
    user_events.updated(uow, user, after, ["roles"])
    audit(uow, "auth.user.roles_changed", caller, subject_id=user.id, before=before, after=after)
    # Tokens carry permissions: the user's next refresh picks up the new ones. The user's
    # partner keys are bounded by the new ones at once.
    uow.after_commit(partial(revoke_access_tokens, ctx, user.id))
    uow.after_commit(partial(api_keys_changed, ctx))
    return as_user(user, after)


async def make_super_admin(
    uow: UnitOfWork, *, email: str, name: str, password_hash: str, new_id: UUID | None = None
) -> UUID:
    """The user of `email` (created when new, with `new_id` when given) active, verified, with
    this password and the super-admin role. The roles must be seeded (`roles.seed`)."""
    session = uow.session
    now = utc_now()
    user = await user_by_email(session, email)
    if user is None:
        user = User(
            id=new_id or uuid4(),
            name=name,
            email=email,
            password_hash=password_hash,
            created_at=now,
        )
        session.add(user)
    else:
        user.password_hash = password_hash
        user.version += 1
    user.is_active = True
    user.deleted_at = None
    user.email_verified_at = user.email_verified_at or now
    user.updated_at = now
    await session.flush()
    role = (await session.scalars(select(Role).where(col(Role.slug) == domain.SUPER_ADMIN))).one()
    if await session.get(UserRole, (user.id, role.id)) is None:
        session.add(UserRole(user_id=user.id, role_id=role.id))
    return user.id


# --- the rules ------------------------------------------------------------------------------


async def _role_ids(session: AsyncSession, slugs: Sequence[str]) -> dict[str, UUID]:
    """Role ids by slug; 422 naming every slug that is not a role."""
    found = {
        slug: role_id
        for role_id, slug in (
            await session.execute(select(Role.id, Role.slug).where(col(Role.slug).in_(slugs)))
        ).all()
    }
    missing = domain.unknown(slugs, found)
    if missing:
        raise unprocessable(
            f"Unknown role: {', '.join(missing)}",
            [FieldError("roles", f"unknown role: {slug}") for slug in missing],
        )
    return found


async def _guard_outranking(session: AsyncSession, caller: Caller, user: User) -> None:
    """Nobody manages an account that holds permissions they lack: otherwise an admin could
    take over a super-admin by resetting its password or e-mail address."""
    beyond = set(await permissions_of(session, user.id)) - caller.permissions
    if beyond:
        raise Problem(403, detail="You cannot manage a user who holds permissions you do not hold.")


async def _guard_removal(session: AsyncSession, caller: Caller, user: User, verb: str) -> None:
    if caller.user_id == user.id:
        raise Problem(409, detail=f"You cannot {verb} your own account.")
    if await _is_last_super_admin(session, user):
        raise Problem(409, detail=f"You cannot {verb} the last active super-admin.")


async def _is_last_super_admin(session: AsyncSession, user: User) -> bool:
    # Locking the super-admin role row makes changes that could remove the last one run one
    # at a time.
    statement = select(Role).where(col(Role.slug) == domain.SUPER_ADMIN).with_for_update()
    role = (await session.scalars(statement)).first()
    if role is None or not user.is_active:
        return False
    holders = select(UserRole.user_id).where(col(UserRole.role_id) == role.id)
    if user.id not in set((await session.scalars(holders)).all()):
        return False
    others = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(
            col(User.id).in_(holders),
            col(User.id) != user.id,
            col(User.is_active).is_(True),
            col(User.deleted_at).is_(None),
        )
    )
    return not others

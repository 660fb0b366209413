"""Roles and the permission catalogue: create, update and delete a role (super-admin cannot be
changed, system roles cannot be deleted, nor a role somebody holds); seed the catalogue and
the default roles at start-up.

A role that loses permissions takes them from its holders at once: their access tokens are
blacklisted and their partner keys republished within the new bounds (ADR 0005).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlalchemy import delete, func
from sqlmodel import col, select

from generated.auth import models
from services.auth import domain
from services.auth.commands.api_keys import api_keys_changed
from services.auth.commands.common import audit
from services.auth.commands.credentials import revoke_access_tokens
from services.auth.queries import as_role, live_role, permissions_by_role
from services.auth.tables import Role, RolePermission, UserRole, metadata
from services.platform import (
    Caller,
    FieldError,
    Problem,
    ServiceContext,
    UnitOfWork,
    affected_rows,
    flush_unique,
    insert_ignoring_conflicts,
    require_if_match,
    unprocessable,
    utc_now,
)


async def create_role(
    uow: UnitOfWork, caller: Caller, body: models.RoleCreate, *, new_id: UUID | None = None
) -> models.Role:
    granted = sorted({permission.root for permission in body.permissions})
    _check_permissions(granted)
    session = uow.session
    taken = await session.scalars(select(Role.id).where(col(Role.slug) == body.slug))
    if taken.first() is not None:
        raise _slug_taken(body.slug)
    now = utc_now()
    role = Role(
        id=new_id or uuid4(),
        slug=body.slug,
        name=body.name,
        description=None if body.description is MISSING else body.description,
        created_at=now,
        updated_at=now,
    )
    session.add(role)
    await flush_unique(session, _slug_taken(body.slug))
    for permission in granted:
        session.add(RolePermission(role_id=role.id, permission_slug=permission))
    audit(uow, "auth.role.created", caller, subject_id=role.id, slug=role.slug, permissions=granted)
    await session.flush()
    return as_role(role, granted)


async def update_role(
    ctx: ServiceContext,
    uow: UnitOfWork,
    caller: Caller,
    role_id: UUID,
    body: models.RoleUpdate,
    *,
    if_match: str | None,
) -> models.Role:
    session = uow.session
    role = await live_role(session, role_id, lock=True)
    require_if_match(if_match, role.version)
    if role.slug == domain.SUPER_ADMIN:
        raise Problem(409, detail="The super-admin role cannot be changed.")
    before = (await permissions_by_role(session, [role.id]))[role.id]
    changed: list[str] = []
    if body.name is not MISSING and body.name != role.name:
        role.name = body.name
        changed.append("name")
    if body.description is not MISSING and body.description != role.description:
        role.description = body.description
        changed.append("description")
    after = before
    if body.permissions is not MISSING:
        after = sorted({permission.root for permission in body.permissions})
        _check_permissions(after)
        if after != before:
            await session.execute(
                delete(RolePermission).where(col(RolePermission.role_id) == role.id)
            )
            for permission in after:
                session.add(RolePermission(role_id=role.id, permission_slug=permission))
            changed.append("permissions")
            await _holders_follow(ctx, uow, role.id, removed=set(before) - set(after))
    if changed:
        role.updated_at = utc_now()
        role.version += 1
        audit(
            uow,
            "auth.role.updated",
            caller,
            subject_id=role.id,
            slug=role.slug,
            changed_fields=changed,
            permissions_before=before,
            permissions_after=after,
        )
    return as_role(role, after)


async def delete_role(uow: UnitOfWork, caller: Caller, role_id: UUID) -> None:
    session = uow.session
    role = await live_role(session, role_id, lock=True)
    if role.is_system:
        raise Problem(409, detail=f"The role {role.slug} is a system role.")
    holders = await session.scalar(
        select(func.count()).select_from(UserRole).where(col(UserRole.role_id) == role.id)
    )
    if holders:
        raise Problem(409, detail=f"The role is assigned to {holders} users.")
    await session.delete(role)
    audit(uow, "auth.role.deleted", caller, subject_id=role.id, slug=role.slug)


async def _holders_follow(
    ctx: ServiceContext, uow: UnitOfWork, role_id: UUID, *, removed: set[str]
) -> None:
    """Once the role's new permissions commit, its holders' partner keys are bounded by them
    and, when the role lost some, their access tokens (which carry the old ones) are
    blacklisted, as when a user's roles change: the next refresh gets the new permissions."""
    if removed:
        holders = await uow.session.scalars(
            select(UserRole.user_id).where(col(UserRole.role_id) == role_id)
        )
        for user_id in holders.all():
            uow.after_commit(partial(revoke_access_tokens, ctx, user_id))
    uow.after_commit(partial(api_keys_changed, ctx))


def _check_permissions(slugs: Iterable[str]) -> None:
    missing = domain.unknown(slugs, domain.PERMISSION_SLUGS)
    if missing:
        raise unprocessable(
            f"Unknown permission: {', '.join(missing)}",
            [FieldError("permissions", f"unknown permission: {slug}") for slug in missing],
        )


def _slug_taken(slug: str) -> Problem:
    return Problem(409, detail=f"The role slug is already taken: {slug}")


# --- the catalogue and the default roles ----------------------------------------------------


async def seed_roles_and_permissions(ctx: ServiceContext) -> None:
    """Start-up hook: `seed` in a unit of work of its own."""
    async with ctx.unit_of_work() as uow:
        await seed(uow)
        await uow.commit()


async def seed(uow: UnitOfWork) -> None:
    """Make the permission catalogue and the default roles exist (idempotent, replica-safe).

    Roles an administrator has edited keep their edits; super-admin always holds every
    permission, including ones added to the catalogue by a later release.
    """
    session, dialect = uow.session, uow.dialect
    now = utc_now()
    for permission in domain.PERMISSIONS:
        await session.execute(
            insert_ignoring_conflicts(
                dialect,
                metadata.tables["permissions"],
                {
                    "slug": permission.slug,
                    "module": permission.module,
                    "resource": permission.resource,
                    "action": permission.action,
                    "description": permission.description,
                },
            )
        )
    created: set[str] = set()
    for definition in domain.DEFAULT_ROLES:
        inserted = await session.execute(
            insert_ignoring_conflicts(
                dialect,
                metadata.tables["roles"],
                {
                    "id": uuid4(),
                    "slug": definition.slug,
                    "name": definition.name,
                    "description": definition.description,
                    "is_system": True,
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                },
            )
        )
        if affected_rows(inserted):
            created.add(definition.slug)
    slugs = [role.slug for role in domain.DEFAULT_ROLES]
    roles = {
        role.slug: role
        for role in (await session.scalars(select(Role).where(col(Role.slug).in_(slugs)))).all()
    }
    current = await permissions_by_role(session, [role.id for role in roles.values()])
    for definition in domain.DEFAULT_ROLES:
        # A new role gets its permissions; super-admin is topped up at every start.
        if definition.slug not in created and definition.slug != domain.SUPER_ADMIN:
            continue
        role = roles[definition.slug]
        for slug in sorted(definition.permissions - set(current[role.id])):
            await session.execute(
                insert_ignoring_conflicts(
                    dialect,
                    metadata.tables["role_permissions"],
                    {"role_id": role.id, "permission_slug": slug},
                )
            )

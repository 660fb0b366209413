"""The auth service's reads: what the API shows of users, roles, permissions, API keys, the
audit log and the signing keys, as the generated response models.

The public functions take the running `ServiceContext` and read on `read_session()` (the
replica when one is configured). The row lookups and the model builders below them take a
session, so that commands use them too — inside their own transaction, with the row lock a
change needs (`lock=True`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.auth import models
from services.auth import domain
from services.auth.tables import (
    ApiKey,
    AuditEntry,
    Permission,
    Role,
    RolePermission,
    User,
    UserRole,
)
from services.auth.tokens import signing_keys
from services.platform import (
    LIKE_ESCAPE,
    Caller,
    Page,
    Problem,
    ServiceContext,
    keyset_of,
    like_pattern,
    newest_first,
    page_of,
    paginate,
    resource_not_found,
    unauthorized,
)

M = TypeVar("M", bound=BaseModel)

# --- reads ----------------------------------------------------------------------------------


async def get_jwks(ctx: ServiceContext) -> models.Jwks:
    return models.Jwks.model_validate(await signing_keys(ctx).jwks())


async def get_me(ctx: ServiceContext, caller: Caller) -> models.User:
    if caller.principal is not None and caller.principal.kind == "api_key":
        raise Problem(403, detail="An API key has no user profile.")
    async with ctx.database.read_session() as session:
        user_id = caller.user_id
        user = await session.get(User, user_id) if user_id else None
        if user is None or user.deleted_at is not None:
            raise unauthorized("The user of this token no longer exists.")
        return await user_model(session, user)


async def list_audit_events(
    ctx: ServiceContext,
    *,
    action: str | None,
    actor_id: UUID | None,
    subject_id: UUID | None,
    cursor: str | None,
    per_page: int,
) -> models.AuditEventList:
    statement = select(AuditEntry)
    if action is not None:
        statement = statement.where(col(AuditEntry.action) == action)
    if actor_id is not None:
        statement = statement.where(col(AuditEntry.actor_id) == actor_id)
    if subject_id is not None:
        statement = statement.where(col(AuditEntry.subject_id) == subject_id)
    async with ctx.database.read_session() as session:
        found = await newest_first(session, statement, col(AuditEntry.seq), cursor, per_page)
    return keyset_of(models.AuditEventList, found)


async def list_users(
    ctx: ServiceContext,
    *,
    page: int,
    per_page: int,
    search: str | None,
    is_active: bool | None,
    role: str | None,
) -> models.UserList:
    statement = select(User).where(col(User.deleted_at).is_(None))
    if search is not None:
        pattern = like_pattern(search)
        statement = statement.where(
            or_(
                func.lower(col(User.name)).like(pattern, escape=LIKE_ESCAPE),
                col(User.email).like(pattern, escape=LIKE_ESCAPE),
            )
        )
    if is_active is not None:
        statement = statement.where(col(User.is_active) == is_active)
    if role is not None:
        holders = (
            select(UserRole.user_id)
            .join(Role, col(Role.id) == col(UserRole.role_id))
            .where(col(Role.slug) == role)
        )
        statement = statement.where(col(User.id).in_(holders))
    statement = statement.order_by(col(User.name), col(User.id))
    async with ctx.database.read_session() as session:
        users, meta = await paginate(session, statement, Page.of(page, per_page))
        roles = await roles_of(session, [user.id for user in users])
    return page_of(models.UserList, [as_user(user, roles[user.id]) for user in users], meta)


async def get_user(ctx: ServiceContext, user_id: UUID) -> models.User:
    async with ctx.database.read_session() as session:
        return await user_model(session, await live_user(session, user_id))


async def list_roles(ctx: ServiceContext, *, page: int, per_page: int) -> models.RoleList:
    statement = select(Role).order_by(col(Role.slug))
    async with ctx.database.read_session() as session:
        roles, meta = await paginate(session, statement, Page.of(page, per_page))
        permissions = await permissions_by_role(session, [role.id for role in roles])
    return page_of(models.RoleList, [as_role(r, permissions[r.id]) for r in roles], meta)


async def get_role(ctx: ServiceContext, role_id: UUID) -> models.Role:
    async with ctx.database.read_session() as session:
        role = await live_role(session, role_id)
        return as_role(role, (await permissions_by_role(session, [role.id]))[role.id])


async def list_permissions(ctx: ServiceContext) -> models.PermissionList:
    async with ctx.database.read_session() as session:
        rows = await session.scalars(select(Permission).order_by(col(Permission.slug)))
        return models.PermissionList.model_validate({"data": rows.all()}, from_attributes=True)


async def list_api_keys(ctx: ServiceContext, *, page: int, per_page: int) -> models.ApiKeyList:
    statement = (
        select(ApiKey)
        .where(col(ApiKey.revoked_at).is_(None))
        .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
    )
    async with ctx.database.read_session() as session:
        keys, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.ApiKeyList, [as_api_key(key) for key in keys], meta)


async def get_api_key(ctx: ServiceContext, api_key_id: UUID) -> models.ApiKey:
    async with ctx.database.read_session() as session:
        return as_api_key(await live_api_key(session, api_key_id))


# --- rows: found or 404 (deleted users and revoked keys are gone from the API) ---------------


async def live_user(session: AsyncSession, user_id: UUID, *, lock: bool = False) -> User:
    """A user that is not deleted (404 otherwise); `lock` takes its row lock (PostgreSQL)."""
    statement = select(User).where(col(User.id) == user_id, col(User.deleted_at).is_(None))
    if lock:
        statement = statement.with_for_update()
    user = (await session.scalars(statement)).first()
    if user is None:
        raise resource_not_found("User", user_id)
    return user


async def live_role(session: AsyncSession, role_id: UUID, *, lock: bool = False) -> Role:
    statement = select(Role).where(col(Role.id) == role_id)
    if lock:
        statement = statement.with_for_update()
    role = (await session.scalars(statement)).first()
    if role is None:
        raise resource_not_found("Role", role_id)
    return role


async def live_api_key(session: AsyncSession, api_key_id: UUID, *, lock: bool = False) -> ApiKey:
    api_key = await session.get(ApiKey, api_key_id, with_for_update=lock)
    if api_key is None or api_key.revoked_at is not None:
        raise resource_not_found("API key", api_key_id)
    return api_key


async def roles_of(session: AsyncSession, user_ids: Iterable[UUID]) -> dict[UUID, list[str]]:
    """The role slugs of each user, sorted."""
    ids = list(user_ids)
    roles: dict[UUID, list[str]] = {user_id: [] for user_id in ids}
    if not ids:
        return roles
    rows = await session.execute(
        select(UserRole.user_id, Role.slug)
        .join(Role, col(Role.id) == col(UserRole.role_id))
        .where(col(UserRole.user_id).in_(ids))
        .order_by(col(Role.slug))
    )
    for user_id, slug in rows.all():
        roles[user_id].append(slug)
    return roles


async def permissions_by_role(
    session: AsyncSession, role_ids: Iterable[UUID]
) -> dict[UUID, list[str]]:
    """The permission slugs of each role, sorted."""
    ids = list(role_ids)
    permissions: dict[UUID, list[str]] = {role_id: [] for role_id in ids}
    if ids:
        rows = await session.execute(
            select(RolePermission.role_id, RolePermission.permission_slug)
            .where(col(RolePermission.role_id).in_(ids))
            .order_by(col(RolePermission.permission_slug))
        )
        for role_id, slug in rows.all():
            permissions[role_id].append(slug)
    return permissions


# --- rows as the API shows them -------------------------------------------------------------


async def user_model(session: AsyncSession, user: User) -> models.User:
    """The user with its roles (read in `session`)."""
    return as_user(user, (await roles_of(session, [user.id]))[user.id])


def as_user(user: User, roles: Iterable[str]) -> models.User:
    return _validate(models.User, user, roles=sorted(roles))


def as_role(role: Role, permissions: Iterable[str]) -> models.Role:
    return _validate(models.Role, role, permissions=sorted(permissions))


def as_api_key(api_key: ApiKey) -> models.ApiKey:
    return _validate(models.ApiKey, api_key, prefix=domain.display_prefix(api_key.prefix))


def as_created_api_key(api_key: ApiKey, secret: str) -> models.ApiKeyCreated:
    """The new key with its secret, shown this once."""
    prefix = domain.display_prefix(api_key.prefix)
    return _validate(models.ApiKeyCreated, api_key, prefix=prefix, key=secret)


def _validate(model: type[M], row: object, **fields: Any) -> M:
    """`model` from the row's attributes of the same names, and `fields` the row lacks (a
    user's roles live in another table) or shows otherwise (a key's display prefix)."""
    values = {name: getattr(row, name) for name in model.model_fields if name not in fields}
    return model.model_validate({**values, **fields})

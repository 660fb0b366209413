"""HTTP handlers of the auth service: one coroutine per operationId of specs/openapi/auth.yaml,
typed by the generated `AuthHandlers` Protocol (checked in `service.py`).

Each calls one query (reads) or one command (writes) and returns the generated response
model; the kit does what the spec declares (docs/kit-api.md).
"""

from __future__ import annotations

from uuid import UUID

from generated.auth import models
from services.auth import queries
from services.auth.commands import api_keys, roles, sessions, users
from services.platform import Call, WriteCall

# --- authentication -------------------------------------------------------------------------


async def get_jwks(call: Call) -> models.Jwks:
    return await queries.get_jwks(call.ctx)


async def register(call: WriteCall, *, body: models.RegisterRequest) -> models.AuthSession:
    return await sessions.register(call.ctx, call.uow, call.caller, body)


async def login(call: WriteCall, *, body: models.LoginRequest) -> models.AuthSession:
    return await sessions.login(call.ctx, call.uow, call.caller, body)


async def refresh_token(call: WriteCall, *, body: models.RefreshRequest) -> models.TokenPair:
    return await sessions.refresh(call.ctx, call.uow, call.caller, body)


async def logout(call: WriteCall, *, body: models.LogoutRequest | None = None) -> None:
    await sessions.logout(call.ctx, call.uow, call.caller, body)


async def get_me(call: Call) -> models.User:
    return await queries.get_me(call.ctx, call.caller)


async def verify_email(call: WriteCall, *, body: models.VerifyEmailRequest) -> models.User:
    return await sessions.verify_email(call.ctx, call.uow, call.caller, body)


async def resend_verification_email(call: WriteCall) -> models.Accepted:
    return await sessions.resend_verification_email(call.ctx, call.uow, call.caller)


async def forgot_password(
    call: WriteCall, *, body: models.ForgotPasswordRequest
) -> models.Accepted:
    return await sessions.forgot_password(call.ctx, call.uow, call.caller, body)


async def reset_password(call: WriteCall, *, body: models.ResetPasswordRequest) -> None:
    await sessions.reset_password(call.ctx, call.uow, call.caller, body)


async def list_audit_events(
    call: Call,
    *,
    action: str | None = None,
    actor_id: UUID | None = None,
    subject_id: UUID | None = None,
    cursor: str | None = None,
    per_page: int = 15,
) -> models.AuditEventList:
    return await queries.list_audit_events(
        call.ctx,
        action=action,
        actor_id=actor_id,
        subject_id=subject_id,
        cursor=cursor,
        per_page=per_page,
    )


# --- users ----------------------------------------------------------------------------------


async def list_users(
    call: Call,
    *,
    page: int = 1,
    per_page: int = 15,
    search: str | None = None,
    is_active: bool | None = None,
    role: str | None = None,
) -> models.UserList:
    return await queries.list_users(
        call.ctx, page=page, per_page=per_page, search=search, is_active=is_active, role=role
    )


async def create_user(call: WriteCall, *, body: models.UserCreate) -> models.User:
    return await users.create_user(call.uow, call.caller, body)


async def get_user(call: Call, *, user_id: UUID) -> models.User:
    return await queries.get_user(call.ctx, user_id)


async def update_user(
    call: WriteCall, *, user_id: UUID, body: models.UserUpdate, if_match: str | None = None
) -> models.User:
    return await users.update_user(
        call.ctx, call.uow, call.caller, user_id, body, if_match=if_match
    )


async def delete_user(call: WriteCall, *, user_id: UUID) -> None:
    await users.delete_user(call.ctx, call.uow, call.caller, user_id)


async def activate_user(call: WriteCall, *, user_id: UUID) -> models.User:
    return await users.activate_user(call.ctx, call.uow, call.caller, user_id)


async def deactivate_user(call: WriteCall, *, user_id: UUID) -> models.User:
    return await users.deactivate_user(call.ctx, call.uow, call.caller, user_id)


async def set_user_roles(
    call: WriteCall, *, user_id: UUID, body: models.UserRolesUpdate
) -> models.User:
    return await users.set_user_roles(call.ctx, call.uow, call.caller, user_id, body)


# --- roles and permissions ------------------------------------------------------------------


async def list_roles(call: Call, *, page: int = 1, per_page: int = 15) -> models.RoleList:
    return await queries.list_roles(call.ctx, page=page, per_page=per_page)


async def create_role(call: WriteCall, *, body: models.RoleCreate) -> models.Role:
    return await roles.create_role(call.uow, call.caller, body)


async def get_role(call: Call, *, role_id: UUID) -> models.Role:
    return await queries.get_role(call.ctx, role_id)


async def update_role(
    call: WriteCall, *, role_id: UUID, body: models.RoleUpdate, if_match: str | None = None
) -> models.Role:
    return await roles.update_role(
        call.ctx, call.uow, call.caller, role_id, body, if_match=if_match
    )


async def delete_role(call: WriteCall, *, role_id: UUID) -> None:
    await roles.delete_role(call.uow, call.caller, role_id)


async def list_permissions(call: Call) -> models.PermissionList:
    return await queries.list_permissions(call.ctx)


# --- API keys -------------------------------------------------------------------------------


async def list_api_keys(call: Call, *, page: int = 1, per_page: int = 15) -> models.ApiKeyList:
    return await queries.list_api_keys(call.ctx, page=page, per_page=per_page)


async def create_api_key(call: WriteCall, *, body: models.ApiKeyCreate) -> models.ApiKeyCreated:
    return await api_keys.create_api_key(call.ctx, call.uow, call.caller, body)


async def get_api_key(call: Call, *, api_key_id: UUID) -> models.ApiKey:
    return await queries.get_api_key(call.ctx, api_key_id)


async def revoke_api_key(call: WriteCall, *, api_key_id: UUID) -> None:
    await api_keys.revoke_api_key(call.ctx, call.uow, call.caller, api_key_id)

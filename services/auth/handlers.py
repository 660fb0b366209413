"""HTTP handlers of the auth service: one coroutine per operationId of specs/openapi/auth.yaml.

Thin by design: connexion has validated the request against the spec; a handler parses the body
into its generated model, calls one use case and turns the result into the generated response
model through the kit's `reply()`. Parameter names are the ones connexion passes
(`pythonic_params=True`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from connexion import context as connexion_context
from connexion.lifecycle import ConnexionResponse
from pydantic import BaseModel, RootModel, ValidationError

from generated.auth import models
from services.auth import domain, usecases
from services.auth.tables import ApiKey, AuditEntry, Permission
from services.auth.usecases import Caller, RoleView, TokenPairView, UserView
from services.platform import (
    Page,
    PageMeta,
    UnitOfWork,
    current_context,
    current_principal,
    etag,
    idempotent,
    reply,
    validation_problem,
)

M = TypeVar("M", bound=BaseModel)


# --- input ----------------------------------------------------------------------------------


def _parse(model: type[M], body: Mapping[str, Any] | None) -> M:
    """The body as its generated model (connexion has checked it against the spec already).

    Bodies with an e-mail address are read as plain dicts instead: the models' EmailStr
    refuses addresses the spec's `format: email` accepts (special-use domains), and such an
    address is no schema error but a business-rule 422 (register) or simply unknown (login).
    """
    try:
        return model.model_validate(body or {})
    except ValidationError as error:
        raise validation_problem(
            [
                {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
                for e in error.errors()
            ]
        ) from None


def _caller() -> Caller:
    client = connexion_context.scope.get("client")
    # uvicorn puts the X-Forwarded-For address here for trusted proxies (the gateway).
    ip = str(client[0]) if client else None
    return Caller(principal=current_principal(), ip=ip)


def _slugs(values: Sequence[Any]) -> list[str]:
    return [str(value.root) if isinstance(value, RootModel) else str(value) for value in values]


# --- output ---------------------------------------------------------------------------------


def _user(view: UserView) -> models.User:
    user = view.user
    return models.User(
        id=user.id,
        name=user.name,
        email=user.email,
        is_active=user.is_active,
        email_verified_at=user.email_verified_at,
        roles=list(view.roles),
        created_at=user.created_at,
        updated_at=user.updated_at,
        version=user.version,
    )


def _role(view: RoleView) -> models.Role:
    role = view.role
    return models.Role(
        id=role.id,
        slug=role.slug,
        name=role.name,
        description=role.description,
        permissions=list(view.permissions),
        is_system=role.is_system,
        created_at=role.created_at,
        updated_at=role.updated_at,
        version=role.version,
    )


def _api_key_fields(api_key: ApiKey) -> dict[str, Any]:
    return {
        "id": api_key.id,
        "name": api_key.name,
        "prefix": domain.display_prefix(api_key.prefix),
        "permissions": list(api_key.permissions),
        "created_at": api_key.created_at,
        "expires_at": api_key.expires_at,
        "last_used_at": api_key.last_used_at,
        "revoked_at": api_key.revoked_at,
    }


def _api_key(api_key: ApiKey) -> models.ApiKey:
    return models.ApiKey(**_api_key_fields(api_key))


def _audit_event(entry: AuditEntry) -> models.AuditEvent:
    return models.AuditEvent(
        id=entry.id,
        action=entry.action,
        actor_id=entry.actor_id,
        subject_id=entry.subject_id,
        ip=entry.ip,
        details=entry.details,
        occurred_at=entry.occurred_at,
    )


def _permission(permission: Permission) -> models.Permission:
    return models.Permission(
        slug=permission.slug,
        module=permission.module,
        resource=permission.resource,
        action=permission.action,
        description=permission.description,
    )


def _pair(tokens: TokenPairView) -> models.TokenPair:
    return models.TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type="Bearer",
        expires_in=tokens.expires_in,
    )


def _meta(meta: PageMeta) -> models.PaginationMeta:
    return models.PaginationMeta(**meta)


def _etag(version: int) -> dict[str, str]:
    return {"ETag": etag(version)}


def _user_reply(view: UserView, status: int = 200, location: bool = False) -> ConnexionResponse:
    headers = _etag(view.user.version)
    if location:
        headers["Location"] = f"/api/v1/users/{view.user.id}"
    return reply(_user(view), status, headers)


def _role_reply(view: RoleView, status: int = 200, location: bool = False) -> ConnexionResponse:
    headers = _etag(view.role.version)
    if location:
        headers["Location"] = f"/api/v1/roles/{view.role.id}"
    return reply(_role(view), status, headers)


# --- authentication -------------------------------------------------------------------------


async def get_jwks() -> ConnexionResponse:
    jwks = await usecases.signing_keys(current_context()).jwks()
    return reply(models.Jwks.model_validate(jwks))


async def register(*, body: dict[str, Any]) -> ConnexionResponse:
    session = await usecases.register(
        current_context(),
        _caller(),
        name=body["name"],
        email=body["email"],
        password=body["password"],
    )
    return reply(models.AuthSession(user=_user(session.user), tokens=_pair(session.tokens)), 201)


async def login(*, body: dict[str, Any]) -> ConnexionResponse:
    session = await usecases.login(
        current_context(), _caller(), email=body["email"], password=body["password"]
    )
    return reply(models.AuthSession(user=_user(session.user), tokens=_pair(session.tokens)))


async def refresh_token(*, body: dict[str, Any]) -> ConnexionResponse:
    request = _parse(models.RefreshRequest, body)
    tokens = await usecases.refresh(
        current_context(), _caller(), refresh_token=request.refresh_token
    )
    return reply(_pair(tokens))


async def logout(*, body: dict[str, Any] | None = None) -> ConnexionResponse:
    _parse(models.LogoutRequest, body)
    token = (body or {}).get("refresh_token")
    await usecases.logout(current_context(), _caller(), refresh_token=token)
    return reply(None, 204)


async def get_me() -> ConnexionResponse:
    return reply(_user(await usecases.get_me(current_context(), _caller())))


async def verify_email(*, body: dict[str, Any]) -> ConnexionResponse:
    request = _parse(models.VerifyEmailRequest, body)
    view = await usecases.verify_email(current_context(), _caller(), token=request.token)
    return reply(_user(view))


async def resend_verification_email() -> ConnexionResponse:
    await usecases.resend_verification_email(current_context(), _caller())
    return reply(models.Accepted(status="accepted"), 202)


async def forgot_password(*, body: dict[str, Any]) -> ConnexionResponse:
    await usecases.forgot_password(current_context(), _caller(), email=body["email"])
    return reply(models.Accepted(status="accepted"), 202)


async def reset_password(*, body: dict[str, Any]) -> ConnexionResponse:
    request = _parse(models.ResetPasswordRequest, body)
    await usecases.reset_password(
        current_context(),
        _caller(),
        token=request.token,
        password=request.password.get_secret_value(),
    )
    return reply(None, 204)


# --- audit log ------------------------------------------------------------------------------


async def list_audit_events(
    *,
    action: str | None = None,
    actor_id: str | None = None,
    subject_id: str | None = None,
    cursor: str | None = None,
    per_page: int = 15,
) -> ConnexionResponse:
    page = await usecases.list_audit_events(
        current_context(),
        action=action,
        actor_id=actor_id,
        subject_id=subject_id,
        cursor=cursor,
        per_page=per_page,
    )
    return reply(
        models.AuditEventList(
            data=[_audit_event(entry) for entry in page.rows],
            meta=models.CursorMeta(next_cursor=page.next_cursor, per_page=page.per_page),
        )
    )


# --- users ----------------------------------------------------------------------------------


async def list_users(
    *,
    page: int = 1,
    per_page: int = 15,
    search: str | None = None,
    is_active: bool | None = None,
    role: str | None = None,
) -> ConnexionResponse:
    views, meta = await usecases.list_users(
        current_context(),
        page=Page.of(page, per_page),
        search=search,
        is_active=is_active,
        role=role,
    )
    return reply(models.UserList(data=[_user(view) for view in views], meta=_meta(meta)))


async def create_user(
    *, idempotency_key: str | None = None, body: dict[str, Any]
) -> ConnexionResponse:
    caller = _caller()

    async def run(uow: UnitOfWork) -> ConnexionResponse:
        view = await usecases.create_user(
            uow,
            caller,
            name=body["name"],
            email=body["email"],
            password=body["password"],
            roles=_slugs(body.get("roles", [])),
            is_active=bool(body.get("is_active", True)),
        )
        return _user_reply(view, 201, location=True)

    return await idempotent(
        current_context(),
        operation_id="create_user",
        key=idempotency_key,
        body=body,
        run=run,
    )


async def get_user(*, user_id: str) -> ConnexionResponse:
    return _user_reply(await usecases.get_user(current_context(), user_id))


async def update_user(
    *, user_id: str, if_match: str | None = None, body: dict[str, Any]
) -> ConnexionResponse:
    password = body.get("password")
    view = await usecases.update_user(
        current_context(),
        _caller(),
        user_id,
        if_match=if_match,
        name=body.get("name"),
        email=body.get("email"),
        password=password if isinstance(password, str) else None,
    )
    return _user_reply(view)


async def delete_user(*, user_id: str) -> ConnexionResponse:
    await usecases.delete_user(current_context(), _caller(), user_id)
    return reply(None, 204)


async def activate_user(*, user_id: str) -> ConnexionResponse:
    view = await usecases.set_active(current_context(), _caller(), user_id, active=True)
    return reply(_user(view))


async def deactivate_user(*, user_id: str) -> ConnexionResponse:
    view = await usecases.set_active(current_context(), _caller(), user_id, active=False)
    return reply(_user(view))


async def set_user_roles(*, user_id: str, body: dict[str, Any]) -> ConnexionResponse:
    request = _parse(models.UserRolesUpdate, body)
    view = await usecases.set_user_roles(
        current_context(), _caller(), user_id, roles=_slugs(request.roles)
    )
    return reply(_user(view))


# --- roles and permissions ------------------------------------------------------------------


async def list_roles(*, page: int = 1, per_page: int = 15) -> ConnexionResponse:
    views, meta = await usecases.list_roles(current_context(), Page.of(page, per_page))
    return reply(models.RoleList(data=[_role(view) for view in views], meta=_meta(meta)))


async def create_role(
    *, idempotency_key: str | None = None, body: dict[str, Any]
) -> ConnexionResponse:
    request = _parse(models.RoleCreate, body)
    caller = _caller()

    async def run(uow: UnitOfWork) -> ConnexionResponse:
        view = await usecases.create_role(
            uow,
            caller,
            slug=request.slug,
            name=request.name,
            description=body.get("description"),
            permissions=_slugs(request.permissions),
        )
        return _role_reply(view, 201, location=True)

    return await idempotent(
        current_context(),
        operation_id="create_role",
        key=idempotency_key,
        body=body,
        run=run,
    )


async def get_role(*, role_id: str) -> ConnexionResponse:
    return _role_reply(await usecases.get_role(current_context(), role_id))


async def update_role(
    *, role_id: str, if_match: str | None = None, body: dict[str, Any]
) -> ConnexionResponse:
    request = _parse(models.RoleUpdate, body)
    changes: dict[str, Any] = {key: body[key] for key in ("name", "description") if key in body}
    if "permissions" in body:
        changes["permissions"] = _slugs(request.permissions)  # type: ignore[arg-type]
    view = await usecases.update_role(
        current_context(),
        _caller(),
        role_id,
        if_match=if_match,
        changes=changes,
    )
    return _role_reply(view)


async def delete_role(*, role_id: str) -> ConnexionResponse:
    await usecases.delete_role(current_context(), _caller(), role_id)
    return reply(None, 204)


async def list_permissions() -> ConnexionResponse:
    permissions = await usecases.list_permissions(current_context())
    return reply(models.PermissionList(data=[_permission(p) for p in permissions]))


# --- API keys -------------------------------------------------------------------------------


async def list_api_keys(*, page: int = 1, per_page: int = 15) -> ConnexionResponse:
    keys, meta = await usecases.list_api_keys(current_context(), Page.of(page, per_page))
    return reply(models.ApiKeyList(data=[_api_key(key) for key in keys], meta=_meta(meta)))


async def create_api_key(
    *, idempotency_key: str | None = None, body: dict[str, Any]
) -> ConnexionResponse:
    request = _parse(models.ApiKeyCreate, body)
    caller = _caller()
    ctx = current_context()

    async def run(uow: UnitOfWork) -> ConnexionResponse:
        created = await usecases.create_api_key(
            ctx,
            uow,
            caller,
            name=request.name,
            permissions=_slugs(request.permissions),
            expires_at=request.expires_at if "expires_at" in body else None,  # type: ignore[arg-type]
        )
        api_key = created.api_key
        return reply(
            models.ApiKeyCreated(**_api_key_fields(api_key), key=created.key),
            201,
            {"Location": f"/api/v1/api-keys/{api_key.id}"},
        )

    return await idempotent(
        ctx, operation_id="create_api_key", key=idempotency_key, body=body, run=run
    )


async def get_api_key(*, api_key_id: str) -> ConnexionResponse:
    return reply(_api_key(await usecases.get_api_key(current_context(), api_key_id)))


async def revoke_api_key(*, api_key_id: str) -> ConnexionResponse:
    await usecases.revoke_api_key(current_context(), _caller(), api_key_id)
    return reply(None, 204)

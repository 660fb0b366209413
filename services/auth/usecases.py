"""The auth service's use cases: one function per thing a caller can do.

Each takes the running `ServiceContext` (or, for creating operations run under an
Idempotency-Key, the `UnitOfWork` the kit opened) and plain arguments, applies the rules of
`domain.py`, writes the tables, the audit log and the events in one transaction (events go to
the outbox through the generated publish functions) and returns plain views for the handlers.
Errors are raised as the kit's `Problem`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final
from uuid import UUID, uuid4

from sqlalchemy import delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    AuthUserActivatedPayload,
    AuthUserDeactivatedPayload,
    AuthUserDeletedPayload,
    AuthUserEmailVerificationRequestedPayload,
    AuthUserPasswordResetRequestedPayload,
    AuthUserRegisteredPayload,
    AuthUserUpdatedPayload,
)
from services.auth import domain
from services.auth.domain import RefreshOutcome, TokenPurpose
from services.auth.tables import (
    ApiKey,
    AuditEntry,
    OneTimeToken,
    Permission,
    RefreshToken,
    Role,
    RolePermission,
    User,
    UserRole,
    metadata,
)
from services.auth.tokens import SigningKeys
from services.platform import (
    FieldError,
    KeysetPage,
    Page,
    PageMeta,
    Principal,
    Problem,
    PublishedApiKey,
    ServiceContext,
    UnitOfWork,
    affected_rows,
    api_key_digest,
    insert_ignoring_conflicts,
    newest_first,
    paginate,
    parse_uuid,
    rate_limit,
    require_if_match,
    unauthorized,
    utc_now,
)

SIGNING_KEYS: Final = "auth.signing_keys"  # ctx.state entry, set by the start-up hook
INVALID_CREDENTIALS: Final = "Invalid credentials"
INVALID_REFRESH_TOKEN: Final = "Invalid refresh token"
# A key's last_used_at is written at most this often: not one UPDATE per partner request.
LAST_USED_RESOLUTION: Final = timedelta(minutes=1)


# --- rate limits (DESIGN §5; the rest protect e-mail and token endpoints from brute force) ---


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    limit: int
    window_seconds: int


REGISTER_LIMIT: Final = Limit("register", 3, 600)
LOGIN_LIMIT: Final = Limit("login", 5, 60)
REFRESH_LIMIT: Final = Limit("refresh", 30, 60)
VERIFY_LIMIT: Final = Limit("verify-email", 10, 60)
RESEND_LIMIT: Final = Limit("verify-email-resend", 3, 600)
FORGOT_LIMIT: Final = Limit("forgot-password", 5, 900)
FORGOT_PER_EMAIL_LIMIT: Final = Limit("forgot-password-email", 3, 3600)
RESET_LIMIT: Final = Limit("reset-password", 10, 60)


async def _limit(ctx: ServiceContext, rule: Limit, *parts: object) -> None:
    key = ctx.keys("auth", "ratelimit", rule.name, *parts)
    await rate_limit(ctx.redis, key, rule.limit, rule.window_seconds)


# --- who is calling -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal (None on public operations) and the client's address."""

    principal: Principal | None = None
    ip: str | None = None

    @property
    def user_id(self) -> UUID | None:
        return self.principal.user_id if self.principal else None

    @property
    def permissions(self) -> frozenset[str]:
        return self.principal.permissions if self.principal else frozenset()

    def audit_details(self) -> dict[str, Any]:
        if self.principal is not None and self.principal.kind == "api_key":
            return {"api_key_id": self.principal.subject}
        return {}


# --- views returned to the handlers ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserView:
    user: User
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoleView:
    role: Role
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenPairView:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class SessionView:
    user: UserView
    tokens: TokenPairView


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # the secret, returned this once


# --- small helpers --------------------------------------------------------------------------


def signing_keys(ctx: ServiceContext) -> SigningKeys:
    keys: SigningKeys = ctx.state[SIGNING_KEYS]
    return keys


def _unprocessable(detail: str, errors: Sequence[FieldError]) -> Problem:
    return Problem(422, detail=detail, errors=[e.as_dict() for e in errors])


def _not_found(kind: str, identifier: object) -> Problem:
    return Problem(404, detail=f"{kind} {identifier} not found.")


def _email_taken() -> Problem:
    return Problem(409, detail="The e-mail address is already registered.")


def _check_new_credentials(email: str, password: str | None) -> str:
    """The normalised address; 422 when it or the password breaks a rule."""
    normalised = domain.normalise_email(email)
    errors = domain.email_errors(normalised)
    if password is not None:
        errors += domain.password_errors(password, normalised)
    if errors:
        what = "password policy" if all(e.field == "password" for e in errors) else "rules"
        raise _unprocessable(f"The request breaks the {what}; see errors.", errors)
    return normalised


async def _hash_password(password: str) -> str:
    # Argon2 takes tens of milliseconds of CPU: keep the event loop free.
    return await asyncio.to_thread(domain.hash_password, password)


def _audit(
    session: AsyncSession,
    action: str,
    caller: Caller,
    *,
    subject_id: UUID | None = None,
    actor_id: UUID | None = None,
    **details: Any,
) -> None:
    session.add(
        AuditEntry(
            action=action,
            actor_id=actor_id or caller.user_id,
            subject_id=subject_id,
            ip=caller.ip,
            details={**caller.audit_details(), **details},
        )
    )


async def _user_by_email(session: AsyncSession, email: str) -> User | None:
    found = await session.scalars(select(User).where(col(User.email) == email))
    return found.first()


async def _live_user(session: AsyncSession, user_id: UUID | str, *, lock: bool = False) -> User:
    """A user that is not deleted (404 otherwise); `lock` takes its row lock (PostgreSQL)."""
    identifier = parse_uuid(user_id)
    statement = select(User).where(col(User.id) == identifier, col(User.deleted_at).is_(None))
    if lock:
        statement = statement.with_for_update()
    user = (await session.scalars(statement)).first() if identifier else None
    if user is None:
        raise _not_found("User", user_id)
    return user


async def _roles_of(session: AsyncSession, user_ids: Iterable[UUID]) -> dict[UUID, list[str]]:
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


async def _user_view(session: AsyncSession, user: User) -> UserView:
    roles = await _roles_of(session, [user.id])
    return UserView(user, tuple(roles[user.id]))


async def _permissions_of(session: AsyncSession, user_id: UUID) -> list[str]:
    rows = await session.scalars(
        select(RolePermission.permission_slug)
        .join(UserRole, col(UserRole.role_id) == col(RolePermission.role_id))
        .where(col(UserRole.user_id) == user_id)
        .distinct()
    )
    return sorted(rows.all())


def _touch(user: User, now: datetime) -> None:
    user.updated_at = now
    user.version += 1


async def _issue_one_time_token(
    session: AsyncSession, user: User, purpose: TokenPurpose, ttl: timedelta, now: datetime
) -> tuple[str, datetime]:
    """A new token of `purpose`; earlier unused ones of the same purpose stop working."""
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


async def _consume_one_time_token(
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


async def _revoke_refresh_tokens(
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


# --- access tokens and their revocation (Redis) ---------------------------------------------


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


async def _blacklist(ctx: ServiceContext, jti: str, exp: datetime) -> None:
    ttl = max(1, int((exp - utc_now()).total_seconds()) + 1)
    await ctx.redis.set(ctx.keys("auth", "blacklist", jti), "1", ex=ttl)


async def revoke_access_tokens(ctx: ServiceContext, user_id: UUID) -> None:
    """Blacklist every access token the user holds (deactivation, deletion, reset, roles)."""
    now = utc_now().timestamp()
    entries: list[tuple[str, float]] = await ctx.redis.zrangebyscore(  # type: ignore[assignment]
        _issued_key(ctx, user_id), now, "+inf", withscores=True
    )
    for jti, exp in entries:
        await _blacklist(ctx, str(jti), datetime.fromtimestamp(float(exp), tz=UTC))
    await ctx.redis.delete(_issued_key(ctx, user_id))


async def _new_session_tokens(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user: User,
    now: datetime,
    *,
    roles: Sequence[str],
    parent: RefreshToken | None = None,
) -> TokenPairView:
    """A refresh token row (a new family, or the successor of `parent`) and an access token
    whose jti is remembered (for revocation) once the unit of work commits."""
    session = uow.session
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
        retired, _ = domain.rotate(_record(parent), row.id, now)
        parent.revoked_at, parent.replaced_by = retired.revoked_at, retired.replaced_by
    session.add(row)
    permissions = await _permissions_of(session, user.id)
    access = await signing_keys(ctx).issue(
        subject=user.id, roles=roles, permissions=permissions, now=now
    )

    uow.after_commit(partial(_remember_issued, ctx, user.id, access.jti, access.expires_at))
    return TokenPairView(access.token, raw_refresh, access.expires_in)


def _record(row: RefreshToken) -> domain.RefreshRecord:
    return domain.RefreshRecord(
        id=row.id,
        user_id=row.user_id,
        family_id=row.family_id,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        replaced_by=row.replaced_by,
    )


# --- events ---------------------------------------------------------------------------------


def _emit_registered(uow: UnitOfWork, user: User, token: str, expires_at: datetime) -> None:
    events.publish_auth_user_registered(
        uow,
        AuthUserRegisteredPayload(
            user_id=user.id,
            name=user.name,
            email=user.email,
            email_verification_token=token,
            verification_expires_at=expires_at,
            registered_at=user.created_at,
        ),
    )


def _emit_updated(uow: UnitOfWork, view: UserView, changed: Sequence[str]) -> None:
    events.publish_auth_user_updated(
        uow,
        AuthUserUpdatedPayload(
            user_id=view.user.id,
            name=view.user.name,
            email=view.user.email,
            is_active=view.user.is_active,
            roles=list(view.roles),
            changed_fields=list(changed),
        ),
    )


def _emit_verification_requested(
    uow: UnitOfWork, user: User, token: str, expires_at: datetime
) -> None:
    events.publish_auth_user_email_verification_requested(
        uow,
        AuthUserEmailVerificationRequestedPayload(
            user_id=user.id,
            name=user.name,
            email=user.email,
            verification_token=token,
            expires_at=expires_at,
        ),
    )


# --- registration, login, tokens ------------------------------------------------------------


async def register(
    ctx: ServiceContext, caller: Caller, *, name: str, email: str, password: str
) -> SessionView:
    await _limit(ctx, REGISTER_LIMIT, caller.ip)
    email = _check_new_credentials(email, password)
    password_hash = await _hash_password(password)
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        session = uow.session
        if await _user_by_email(session, email) is not None:
            raise _email_taken()
        user = User(
            name=name, email=email, password_hash=password_hash, created_at=now, updated_at=now
        )
        session.add(user)
        await _flush_unique(session, _email_taken)
        token, expires_at = await _issue_one_time_token(
            session, user, TokenPurpose.EMAIL_VERIFICATION, domain.EMAIL_VERIFICATION_TTL, now
        )
        _emit_registered(uow, user, token, expires_at)
        _audit(session, "auth.user.registered", caller, subject_id=user.id, actor_id=user.id)
        tokens = await _new_session_tokens(ctx, uow, user, now, roles=())
        await uow.commit()
    return SessionView(UserView(user, ()), tokens)


async def _flush_unique(session: AsyncSession, conflict: Any) -> None:
    """Flush; a unique violation (a concurrent insert of the same key) becomes a 409."""
    try:
        await session.flush()
    except IntegrityError:
        raise conflict() from None


async def login(ctx: ServiceContext, caller: Caller, *, email: str, password: str) -> SessionView:
    email = domain.normalise_email(email)
    await _limit(ctx, LOGIN_LIMIT, caller.ip, domain.token_hash(email)[:32])
    async with ctx.unit_of_work() as uow:
        session = uow.session
        user = await _user_by_email(session, email)
        if user is not None and user.deleted_at is not None:
            user = None
        password_hash = user.password_hash if user else None
        valid = await asyncio.to_thread(domain.verify_password, password_hash, password)
        if user is None or not valid:
            subject = user.id if user else None
            _audit(session, "auth.login.failed", caller, subject_id=subject, email=email)
            await uow.commit()
            raise unauthorized(INVALID_CREDENTIALS)
        # Only after the password is proven, so that probing cannot find inactive accounts.
        if not user.is_active:
            _audit(session, "auth.login.failed", caller, subject_id=user.id, reason="inactive")
            await uow.commit()
            raise Problem(403, detail="The account is inactive.")
        if domain.password_needs_rehash(user.password_hash):
            user.password_hash = await _hash_password(password)
        now = utc_now()
        view = await _user_view(session, user)
        tokens = await _new_session_tokens(ctx, uow, user, now, roles=view.roles)
        _audit(session, "auth.login.succeeded", caller, subject_id=user.id, actor_id=user.id)
        await uow.commit()
    return SessionView(view, tokens)


async def refresh(ctx: ServiceContext, caller: Caller, *, refresh_token: str) -> TokenPairView:
    await _limit(ctx, REFRESH_LIMIT, caller.ip)
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        session = uow.session
        # The row lock serialises two concurrent uses of one token: the second sees it rotated.
        row = (
            await session.scalars(
                select(RefreshToken)
                .where(col(RefreshToken.token_hash) == domain.token_hash(refresh_token))
                .with_for_update()
            )
        ).first()
        if row is None:
            raise unauthorized(INVALID_REFRESH_TOKEN)
        outcome = domain.refresh_outcome(_record(row), now)
        if outcome is RefreshOutcome.REUSED:
            await _revoke_refresh_tokens(session, now, family_id=row.family_id)
            _audit(
                session,
                "auth.refresh_token.reused",
                caller,
                subject_id=row.user_id,
                family_id=str(row.family_id),
            )
            await uow.commit()
            raise unauthorized(INVALID_REFRESH_TOKEN)
        if outcome is not RefreshOutcome.ROTATE:
            raise unauthorized(INVALID_REFRESH_TOKEN)
        user = await session.get(User, row.user_id)
        if user is None or user.deleted_at is not None or not user.is_active:
            raise unauthorized(INVALID_REFRESH_TOKEN)
        view = await _user_view(session, user)
        tokens = await _new_session_tokens(ctx, uow, user, now, roles=view.roles, parent=row)
        await uow.commit()
    return tokens


async def logout(ctx: ServiceContext, caller: Caller, *, refresh_token: str | None) -> None:
    principal = caller.principal
    if principal is None:
        raise unauthorized("Authentication is required.")
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        session = uow.session
        if refresh_token is not None and caller.user_id is not None:
            row = (
                await session.scalars(
                    select(RefreshToken).where(
                        col(RefreshToken.token_hash) == domain.token_hash(refresh_token),
                        col(RefreshToken.user_id) == caller.user_id,
                    )
                )
            ).first()
            # Someone else's token (or garbage) is ignored: logout never reveals what exists.
            if row is not None:
                await _revoke_refresh_tokens(session, now, family_id=row.family_id)
        _audit(session, "auth.logout", caller, subject_id=caller.user_id)
        if principal.token_id is not None and principal.expires_at is not None:
            uow.after_commit(partial(_blacklist, ctx, principal.token_id, principal.expires_at))
        await uow.commit()


async def get_me(ctx: ServiceContext, caller: Caller) -> UserView:
    if caller.principal is not None and caller.principal.kind == "api_key":
        raise Problem(403, detail="An API key has no user profile.")
    async with ctx.database.read_session() as session:
        user_id = caller.user_id
        user = await session.get(User, user_id) if user_id else None
        if user is None or user.deleted_at is not None:
            raise unauthorized("The user of this token no longer exists.")
        return await _user_view(session, user)


# --- e-mail verification and password reset -------------------------------------------------


async def verify_email(ctx: ServiceContext, caller: Caller, *, token: str) -> UserView:
    await _limit(ctx, VERIFY_LIMIT, caller.ip)
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        purpose = TokenPurpose.EMAIL_VERIFICATION
        user = await _consume_one_time_token(uow.session, token, purpose, now)
        if user is None:
            raise Problem(422, detail="The verification token is invalid or has expired.")
        if user.email_verified_at is None:
            user.email_verified_at = now
            _touch(user, now)
        view = await _user_view(uow.session, user)
        await uow.commit()
    return view


async def resend_verification_email(ctx: ServiceContext, caller: Caller) -> None:
    user_id = caller.user_id
    if user_id is None:
        raise Problem(403, detail="An API key has no e-mail address to verify.")
    await _limit(ctx, RESEND_LIMIT, user_id)
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        user = await uow.session.get(User, user_id)
        if user is None or user.deleted_at is not None:
            raise unauthorized("The user of this token no longer exists.")
        if user.email_verified_at is not None:
            raise Problem(409, detail="The e-mail address is already verified.")
        token, expires_at = await _issue_one_time_token(
            uow.session, user, TokenPurpose.EMAIL_VERIFICATION, domain.EMAIL_VERIFICATION_TTL, now
        )
        _emit_verification_requested(uow, user, token, expires_at)
        await uow.commit()


async def forgot_password(ctx: ServiceContext, caller: Caller, *, email: str) -> None:
    """Always succeeds for the caller (no user enumeration); only a live account gets mail."""
    await _limit(ctx, FORGOT_LIMIT, caller.ip)
    email = domain.normalise_email(email)
    try:
        # Per address too, silently: nobody can flood someone's inbox from many addresses.
        await _limit(ctx, FORGOT_PER_EMAIL_LIMIT, domain.token_hash(email)[:32])
    except Problem:
        return
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        user = await _user_by_email(uow.session, email)
        if user is None or user.deleted_at is not None or not user.is_active:
            return
        token, expires_at = await _issue_one_time_token(
            uow.session, user, TokenPurpose.PASSWORD_RESET, domain.PASSWORD_RESET_TTL, now
        )
        events.publish_auth_user_password_reset_requested(
            uow,
            AuthUserPasswordResetRequestedPayload(
                user_id=user.id,
                name=user.name,
                email=user.email,
                reset_token=token,
                expires_at=expires_at,
            ),
        )
        _audit(uow.session, "auth.password.reset_requested", caller, subject_id=user.id)
        await uow.commit()


async def reset_password(ctx: ServiceContext, caller: Caller, *, token: str, password: str) -> None:
    await _limit(ctx, RESET_LIMIT, caller.ip)
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        session = uow.session
        user = await _consume_one_time_token(session, token, TokenPurpose.PASSWORD_RESET, now)
        if user is None or not user.is_active:
            raise Problem(422, detail="The reset token is invalid or has expired.")
        errors = domain.password_errors(password, user.email)
        if errors:
            raise _unprocessable("The password does not meet the password policy.", errors)
        user.password_hash = await _hash_password(password)
        _touch(user, now)
        await _revoke_refresh_tokens(session, now, user_id=user.id)
        _audit(session, "auth.password.reset", caller, subject_id=user.id, actor_id=user.id)
        _emit_updated(uow, await _user_view(session, user), ["password"])
        uow.after_commit(partial(revoke_access_tokens, ctx, user.id))
        await uow.commit()


# --- audit log ------------------------------------------------------------------------------


async def list_audit_events(
    ctx: ServiceContext,
    *,
    action: str | None,
    actor_id: str | None,
    subject_id: str | None,
    cursor: str | None,
    per_page: int,
) -> KeysetPage[AuditEntry]:
    statement = select(AuditEntry)
    if action is not None:
        statement = statement.where(col(AuditEntry.action) == action)
    if actor_id is not None:
        statement = statement.where(col(AuditEntry.actor_id) == parse_uuid(actor_id))
    if subject_id is not None:
        statement = statement.where(col(AuditEntry.subject_id) == parse_uuid(subject_id))
    async with ctx.database.read_session() as session:
        return await newest_first(session, statement, col(AuditEntry.seq), cursor, per_page)


# --- users ----------------------------------------------------------------------------------


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_users(
    ctx: ServiceContext,
    *,
    page: Page,
    search: str | None,
    is_active: bool | None,
    role: str | None,
) -> tuple[list[UserView], PageMeta]:
    statement = select(User).where(col(User.deleted_at).is_(None))
    if search is not None:
        pattern = _like(search)
        statement = statement.where(
            or_(
                func.lower(col(User.name)).like(pattern, escape="\\"),
                col(User.email).like(pattern, escape="\\"),
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
        users, meta = await paginate(session, statement, page)
        roles = await _roles_of(session, [user.id for user in users])
    return [UserView(user, tuple(roles[user.id])) for user in users], meta


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
        raise _unprocessable(
            f"Unknown role: {', '.join(missing)}",
            [FieldError("roles", f"unknown role: {slug}") for slug in missing],
        )
    return found


async def create_user(
    uow: UnitOfWork,
    caller: Caller,
    *,
    name: str,
    email: str,
    password: str,
    roles: Sequence[str],
    is_active: bool,
) -> UserView:
    # Assigning roles is role management: without this check auth.users.create would be a
    # way to mint a super-admin.
    if roles and "auth.roles.manage" not in caller.permissions:
        raise Problem(403, detail="Missing permission: auth.roles.manage (to assign roles)")
    email = _check_new_credentials(email, password)
    session = uow.session
    role_ids = await _role_ids(session, roles)
    if await _user_by_email(session, email) is not None:
        raise _email_taken()
    password_hash = await _hash_password(password)
    now = utc_now()
    user = User(
        name=name,
        email=email,
        password_hash=password_hash,
        is_active=is_active,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    await _flush_unique(session, _email_taken)
    for role_id in role_ids.values():
        session.add(UserRole(user_id=user.id, role_id=role_id))
    token, expires_at = await _issue_one_time_token(
        session, user, TokenPurpose.EMAIL_VERIFICATION, domain.EMAIL_VERIFICATION_TTL, now
    )
    _emit_registered(uow, user, token, expires_at)
    _audit(session, "auth.user.created", caller, subject_id=user.id, roles=sorted(roles))
    await session.flush()
    return UserView(user, tuple(sorted(roles)))


async def get_user(ctx: ServiceContext, user_id: str) -> UserView:
    async with ctx.database.read_session() as session:
        return await _user_view(session, await _live_user(session, user_id))


async def update_user(
    ctx: ServiceContext,
    caller: Caller,
    user_id: str,
    *,
    if_match: str | None,
    name: str | None,
    email: str | None,
    password: str | None,
) -> UserView:
    now = utc_now()
    revoke_sessions = False
    async with ctx.unit_of_work() as uow:
        session = uow.session
        user = await _live_user(session, user_id, lock=True)
        require_if_match(if_match, user.version)
        await _guard_outranking(session, caller, user)
        changed: list[str] = []
        new_email = domain.normalise_email(email) if email is not None else user.email
        if new_email != user.email:
            _check_new_credentials(new_email, None)
            if await _user_by_email(session, new_email) is not None:
                raise _email_taken()
        if password is not None:
            errors = domain.password_errors(password, new_email)
            if errors:
                raise _unprocessable("The password does not meet the password policy.", errors)
            user.password_hash = await _hash_password(password)
            changed.append("password")
            revoke_sessions = True
        if name is not None and name != user.name:
            user.name = name
            changed.append("name")
        if new_email != user.email:
            user.email = new_email
            user.email_verified_at = None  # the new address has to be verified again
            changed.append("email")
        if not changed:
            view = await _user_view(session, user)
            await uow.commit()
            return view
        _touch(user, now)
        await _flush_unique(session, _email_taken)
        if "email" in changed:
            token, expires_at = await _issue_one_time_token(
                session, user, TokenPurpose.EMAIL_VERIFICATION, domain.EMAIL_VERIFICATION_TTL, now
            )
            _emit_verification_requested(uow, user, token, expires_at)
        if revoke_sessions:
            await _revoke_refresh_tokens(session, now, user_id=user.id)
            uow.after_commit(partial(revoke_access_tokens, ctx, user.id))
        view = await _user_view(session, user)
        _emit_updated(uow, view, changed)
        _audit(session, "auth.user.updated", caller, subject_id=user.id, changed_fields=changed)
        await uow.commit()
    return view


async def _lock_super_admins(session: AsyncSession) -> Role | None:
    """Lock the super-admin role row: changes that could remove the last one run one by one."""
    statement = select(Role).where(col(Role.slug) == domain.SUPER_ADMIN).with_for_update()
    return (await session.scalars(statement)).first()


async def _is_last_super_admin(session: AsyncSession, user: User) -> bool:
    role = await _lock_super_admins(session)
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


async def _guard_outranking(session: AsyncSession, caller: Caller, user: User) -> None:
    """Nobody manages an account that holds permissions they lack: otherwise an admin could
    take over a super-admin by resetting its password or e-mail address."""
    beyond = set(await _permissions_of(session, user.id)) - caller.permissions
    if beyond:
        raise Problem(403, detail="You cannot manage a user who holds permissions you do not hold.")


async def _guard_removal(session: AsyncSession, caller: Caller, user: User, verb: str) -> None:
    if caller.user_id == user.id:
        raise Problem(409, detail=f"You cannot {verb} your own account.")
    if await _is_last_super_admin(session, user):
        raise Problem(409, detail=f"You cannot {verb} the last active super-admin.")


async def delete_user(ctx: ServiceContext, caller: Caller, user_id: str) -> None:
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        session = uow.session
        user = await _live_user(session, user_id, lock=True)
        await _guard_outranking(session, caller, user)
        await _guard_removal(session, caller, user, "delete")
        user.deleted_at = now
        user.is_active = False
        _touch(user, now)
        # Its roles go with it, so that a role it held can be deleted.
        await session.execute(delete(UserRole).where(col(UserRole.user_id) == user.id))
        await _revoke_refresh_tokens(session, now, user_id=user.id)
        events.publish_auth_user_deleted(
            uow, AuthUserDeletedPayload(user_id=user.id, email=user.email, deleted_at=now)
        )
        _audit(session, "auth.user.deleted", caller, subject_id=user.id)
        uow.after_commit(partial(revoke_access_tokens, ctx, user.id))
        await uow.commit()


async def set_active(
    ctx: ServiceContext, caller: Caller, user_id: str, *, active: bool
) -> UserView:
    """Activate or deactivate (idempotent: no event when nothing changes)."""
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        session = uow.session
        user = await _live_user(session, user_id, lock=True)
        await _guard_outranking(session, caller, user)
        if not active:
            await _guard_removal(session, caller, user, "deactivate")
        changed = user.is_active != active
        if changed:
            user.is_active = active
            _touch(user, now)
            if active:
                events.publish_auth_user_activated(
                    uow,
                    AuthUserActivatedPayload(user_id=user.id, email=user.email, occurred_at=now),
                )
            else:
                await _revoke_refresh_tokens(session, now, user_id=user.id)
                uow.after_commit(partial(revoke_access_tokens, ctx, user.id))
                events.publish_auth_user_deactivated(
                    uow,
                    AuthUserDeactivatedPayload(user_id=user.id, email=user.email, occurred_at=now),
                )
            action = "auth.user.activated" if active else "auth.user.deactivated"
            _audit(session, action, caller, subject_id=user.id)
        view = await _user_view(session, user)
        await uow.commit()
    return view


async def set_user_roles(
    ctx: ServiceContext, caller: Caller, user_id: str, *, roles: Sequence[str]
) -> UserView:
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        session = uow.session
        user = await _live_user(session, user_id, lock=True)
        role_ids = await _role_ids(session, roles)
        before = (await _roles_of(session, [user.id]))[user.id]
        after = sorted(set(roles))
        if before == after:
            view = UserView(user, tuple(before))
            await uow.commit()
            return view
        if domain.SUPER_ADMIN not in after and await _is_last_super_admin(session, user):
            raise Problem(
                409, detail="The last active super-admin cannot lose the super-admin role."
            )
        await session.execute(delete(UserRole).where(col(UserRole.user_id) == user.id))
        for slug in after:
            session.add(UserRole(user_id=user.id, role_id=role_ids[slug]))
        _touch(user, now)
        view = UserView(user, tuple(after))
        _emit_updated(uow, view, ["roles"])
        _audit(
            session,
            "auth.user.roles_changed",
            caller,
            subject_id=user.id,
            before=before,
            after=after,
        )
        # Tokens carry permissions: the user's next refresh picks up the new ones.
        uow.after_commit(partial(revoke_access_tokens, ctx, user.id))
        await uow.commit()
    return view


# --- roles and permissions ------------------------------------------------------------------


async def _permissions_by_role(
    session: AsyncSession, role_ids: Iterable[UUID]
) -> dict[UUID, list[str]]:
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


async def _role_view(session: AsyncSession, role: Role) -> RoleView:
    return RoleView(role, tuple((await _permissions_by_role(session, [role.id]))[role.id]))


async def _live_role(session: AsyncSession, role_id: str, *, lock: bool = False) -> Role:
    identifier = parse_uuid(role_id)
    statement = select(Role).where(col(Role.id) == identifier)
    if lock:
        statement = statement.with_for_update()
    role = (await session.scalars(statement)).first() if identifier else None
    if role is None:
        raise _not_found("Role", role_id)
    return role


def _check_permissions(slugs: Iterable[str]) -> None:
    missing = domain.unknown(slugs, domain.PERMISSION_SLUGS)
    if missing:
        raise _unprocessable(
            f"Unknown permission: {', '.join(missing)}",
            [FieldError("permissions", f"unknown permission: {slug}") for slug in missing],
        )


async def list_roles(ctx: ServiceContext, page: Page) -> tuple[list[RoleView], PageMeta]:
    async with ctx.database.read_session() as session:
        roles, meta = await paginate(session, select(Role).order_by(col(Role.slug)), page)
        permissions = await _permissions_by_role(session, [role.id for role in roles])
    return [RoleView(role, tuple(permissions[role.id])) for role in roles], meta


def _slug_taken(slug: str) -> Any:
    return lambda: Problem(409, detail=f"The role slug is already taken: {slug}")


async def create_role(
    uow: UnitOfWork,
    caller: Caller,
    *,
    slug: str,
    name: str,
    description: str | None,
    permissions: Sequence[str],
) -> RoleView:
    _check_permissions(permissions)
    session = uow.session
    taken = await session.scalars(select(Role.id).where(col(Role.slug) == slug))
    if taken.first() is not None:
        raise _slug_taken(slug)()
    now = utc_now()
    role = Role(slug=slug, name=name, description=description, created_at=now, updated_at=now)
    session.add(role)
    await _flush_unique(session, _slug_taken(slug))
    granted = sorted(set(permissions))
    for permission in granted:
        session.add(RolePermission(role_id=role.id, permission_slug=permission))
    _audit(session, "auth.role.created", caller, subject_id=role.id, slug=slug, permissions=granted)
    await session.flush()
    return RoleView(role, tuple(granted))


async def get_role(ctx: ServiceContext, role_id: str) -> RoleView:
    async with ctx.database.read_session() as session:
        return await _role_view(session, await _live_role(session, role_id))


async def update_role(
    ctx: ServiceContext,
    caller: Caller,
    role_id: str,
    *,
    if_match: str | None,
    changes: dict[str, Any],
) -> RoleView:
    """`changes` holds the fields present in the request (name, description, permissions)."""
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        session = uow.session
        role = await _live_role(session, role_id, lock=True)
        require_if_match(if_match, role.version)
        if role.slug == domain.SUPER_ADMIN:
            raise Problem(409, detail="The super-admin role cannot be changed.")
        before = (await _permissions_by_role(session, [role.id]))[role.id]
        changed: list[str] = []
        if "name" in changes and changes["name"] != role.name:
            role.name = changes["name"]
            changed.append("name")
        if "description" in changes and changes["description"] != role.description:
            role.description = changes["description"]
            changed.append("description")
        after = before
        if "permissions" in changes:
            _check_permissions(changes["permissions"])
            after = sorted(set(changes["permissions"]))
            if after != before:
                await session.execute(
                    delete(RolePermission).where(col(RolePermission.role_id) == role.id)
                )
                for permission in after:
                    session.add(RolePermission(role_id=role.id, permission_slug=permission))
                changed.append("permissions")
        if changed:
            role.updated_at = now
            role.version += 1
            _audit(
                session,
                "auth.role.updated",
                caller,
                subject_id=role.id,
                slug=role.slug,
                changed_fields=changed,
                permissions_before=before,
                permissions_after=after,
            )
        await uow.commit()
    return RoleView(role, tuple(after))


async def delete_role(ctx: ServiceContext, caller: Caller, role_id: str) -> None:
    async with ctx.unit_of_work() as uow:
        session = uow.session
        role = await _live_role(session, role_id, lock=True)
        if role.is_system:
            raise Problem(409, detail=f"The role {role.slug} is a system role.")
        holders = await session.scalar(
            select(func.count()).select_from(UserRole).where(col(UserRole.role_id) == role.id)
        )
        if holders:
            raise Problem(409, detail=f"The role is assigned to {holders} users.")
        await session.delete(role)
        _audit(session, "auth.role.deleted", caller, subject_id=role.id, slug=role.slug)
        await uow.commit()


async def list_permissions(ctx: ServiceContext) -> list[Permission]:
    async with ctx.database.read_session() as session:
        rows = await session.scalars(select(Permission).order_by(col(Permission.slug)))
        return list(rows.all())


# --- API keys -------------------------------------------------------------------------------


async def list_api_keys(ctx: ServiceContext, page: Page) -> tuple[list[ApiKey], PageMeta]:
    statement = (
        select(ApiKey)
        .where(col(ApiKey.revoked_at).is_(None))
        .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
    )
    async with ctx.database.read_session() as session:
        keys, meta = await paginate(session, statement, page)
    return list(keys), meta


async def create_api_key(
    ctx: ServiceContext,
    uow: UnitOfWork,
    caller: Caller,
    *,
    name: str,
    permissions: Sequence[str],
    expires_at: datetime | None,
) -> CreatedApiKey:
    errors = domain.grantable_errors(permissions, caller.permissions)
    now = utc_now()
    if expires_at is not None and expires_at <= now:
        errors.append(FieldError("expires_at", "must be in the future"))
    if errors:
        not_held = sorted(set(permissions) & domain.PERMISSION_SLUGS - caller.permissions)
        detail = (
            f"You cannot grant a permission you do not hold: {', '.join(not_held)}"
            if not_held
            else f"{errors[0].field}: {errors[0].message}"
        )
        raise _unprocessable(detail, errors)
    secret = domain.new_api_key()
    api_key = ApiKey(
        name=name,
        prefix=secret.prefix,
        key_hash=secret.key_hash,
        permissions=sorted(set(permissions)),
        created_by=caller.user_id,
        created_at=now,
        expires_at=expires_at,
    )
    uow.session.add(api_key)
    _audit(
        uow.session,
        "auth.api_key.created",
        caller,
        subject_id=api_key.id,
        name=name,
        prefix=secret.display_prefix,
        permissions=api_key.permissions,
    )
    await uow.session.flush()
    uow.after_commit(partial(publish_api_keys, ctx))  # usable on every service at once
    return CreatedApiKey(api_key, secret.key)


async def _live_api_key(session: AsyncSession, api_key_id: str) -> ApiKey:
    identifier = parse_uuid(api_key_id)
    api_key = await session.get(ApiKey, identifier) if identifier else None
    if api_key is None or api_key.revoked_at is not None:
        raise _not_found("API key", api_key_id)
    return api_key


async def get_api_key(ctx: ServiceContext, api_key_id: str) -> ApiKey:
    async with ctx.database.read_session() as session:
        return await _live_api_key(session, api_key_id)


async def revoke_api_key(ctx: ServiceContext, caller: Caller, api_key_id: str) -> None:
    async with ctx.unit_of_work() as uow:
        api_key = await _live_api_key(uow.session, api_key_id)
        if caller.principal is not None and caller.principal.subject == str(api_key.id):
            raise Problem(409, detail="A key cannot revoke itself; use another credential.")
        api_key.revoked_at = utc_now()
        _audit(
            uow.session,
            "auth.api_key.revoked",
            caller,
            subject_id=api_key.id,
            prefix=domain.display_prefix(api_key.prefix),
        )
        uow.after_commit(partial(publish_api_keys, ctx))  # refused on every service at once
        await uow.commit()


async def publish_api_keys(ctx: ServiceContext) -> None:
    """Mirror the active partner keys into shared Redis, where every other service verifies
    them (`services.platform.http.security.PublishedApiKeys`); drop the revoked and expired ones;
    fold the other services' last-use marks into `last_used_at`.

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
    """The kit's `ApiKeyVerifier`: a key is valid while not revoked and not expired."""

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


# --- start-up -------------------------------------------------------------------------------


async def seed_roles_and_permissions(ctx: ServiceContext) -> None:
    """Make the permission catalogue and the default roles exist (idempotent, replica-safe).

    Roles an administrator has edited keep their edits; super-admin always holds every
    permission, including ones added to the catalogue by a later release.
    """
    async with ctx.database.session() as session:
        dialect = ctx.database.dialect
        await seed(session, dialect)
        await session.commit()


async def seed(session: AsyncSession, dialect: str) -> None:
    """The body of `seed_roles_and_permissions` on a given session (also used by admin.py)."""
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
    roles = {
        role.slug: role
        for role in (
            await session.scalars(
                select(Role).where(col(Role.slug).in_([r.slug for r in domain.DEFAULT_ROLES]))
            )
        ).all()
    }
    current = await _permissions_by_role(session, [role.id for role in roles.values()])
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


async def start_signing_keys(ctx: ServiceContext) -> None:
    keys = SigningKeys(
        ctx.database, issuer=ctx.settings.jwt_issuer, audience=ctx.settings.jwt_audience
    )
    await keys.ensure_active()
    ctx.state[SIGNING_KEYS] = keys

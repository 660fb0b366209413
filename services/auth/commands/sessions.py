"""Sessions and the account's own credentials: register, log in, refresh, log out, verify the
e-mail address, reset a forgotten password.

All but logout are rate limited in Redis before they touch the database: the count stands
whatever becomes of the request's unit of work. A failed login and a reused refresh token
leave a record (an audit row; the token family revoked) that must outlive the error answer,
so those commit it before raising (`committed`); anything else a command raises rolls its
writes back.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Final
from uuid import UUID

from pydantic import MISSING
from sqlmodel import col, select

from generated.auth import models
from services.auth import domain
from services.auth.commands import password_resets, user_events
from services.auth.commands.common import (
    Limit,
    audit,
    check_new_credentials,
    check_password,
    email_taken,
    hash_password,
    touch,
    user_by_email,
)
from services.auth.commands.credentials import (
    blacklist,
    consume_one_time_token,
    end_family,
    end_sessions,
    family_of_access_token,
    issue_one_time_token,
    new_session_tokens,
    refresh_record,
)
from services.auth.domain import RefreshOutcome, TokenPurpose
from services.auth.queries import as_user, roles_of, user_model
from services.auth.tables import RefreshToken, User
from services.platform import (
    Caller,
    Problem,
    ServiceContext,
    UnitOfWork,
    flush_unique,
    unauthorized,
    utc_now,
)

INVALID_CREDENTIALS: Final = "Invalid credentials"
INVALID_REFRESH_TOKEN: Final = "Invalid refresh token"
ACCEPTED: Final = models.Accepted(status="accepted")

# DESIGN §5 sets register and login; the others protect the token and e-mail endpoints.
REGISTER_LIMIT: Final = Limit("register", 3, 600)
LOGIN_LIMIT: Final = Limit("login", 5, 60)
# Failed logins (a right password gives its hit back): per client address whatever the e-mail
# (one address trying many accounts), and per account whatever the address (many addresses
# trying one account). See ADR 0006.
LOGIN_FAILURES_PER_IP: Final = Limit("login-failures-ip", 20, 600)
LOGIN_FAILURES_PER_ACCOUNT: Final = Limit("login-failures-account", 10, 900)
REFRESH_LIMIT: Final = Limit("refresh", 30, 60)
VERIFY_LIMIT: Final = Limit("verify-email", 10, 60)
RESEND_LIMIT: Final = Limit("verify-email-resend", 3, 600)
FORGOT_LIMIT: Final = Limit("forgot-password", 5, 900)
FORGOT_PER_EMAIL_AND_IP_LIMIT: Final = Limit("forgot-password-email-ip", 3, 3600)
RESET_LIMIT: Final = Limit("reset-password", 10, 60)


# --- registration, login, tokens ------------------------------------------------------------


async def register(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, body: models.RegisterRequest
) -> models.AuthSession:
    await REGISTER_LIMIT.hit(ctx, caller.client_ip)
    password = body.password.get_secret_value()
    email = check_new_credentials(body.email, password)
    password_hash = await hash_password(password)
    now = utc_now()
    if await user_by_email(uow.session, email) is not None:
        raise email_taken()
    user = User(
        name=body.name, email=email, password_hash=password_hash, created_at=now, updated_at=now
    )
    uow.session.add(user)
    await flush_unique(uow.session, email_taken())
    token, expires_at = await issue_one_time_token(
        uow.session, user, TokenPurpose.EMAIL_VERIFICATION, domain.EMAIL_VERIFICATION_TTL, now
    )
    user_events.registered(uow, user, token, expires_at)
    audit(uow, "auth.user.registered", caller, subject_id=user.id, actor_id=user.id)
    tokens = await new_session_tokens(ctx, uow, user, now, roles=())
    return models.AuthSession(user=as_user(user, ()), tokens=tokens)


async def login(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, body: models.LoginRequest
) -> models.AuthSession:
    email = domain.normalise_email(body.email)
    account = domain.token_hash(email)[:32]  # the same bucket whether the account exists or not
    await LOGIN_LIMIT.hit(ctx, caller.client_ip, account)
    await LOGIN_FAILURES_PER_IP.hit(ctx, caller.client_ip)
    await LOGIN_FAILURES_PER_ACCOUNT.hit(ctx, account)
    password = body.password.get_secret_value()
    user = await user_by_email(uow.session, email)
    if user is not None and user.deleted_at is not None:
        user = None
    password_hash = user.password_hash if user else None
    valid = await asyncio.to_thread(domain.verify_password, password_hash, password)
    if user is None or not valid:
        subject = user.id if user else None
        audit(uow, "auth.login.failed", caller, subject_id=subject, email=email)
        raise await uow.refuse(unauthorized(INVALID_CREDENTIALS))
    await LOGIN_FAILURES_PER_IP.refund(ctx, caller.client_ip)
    await LOGIN_FAILURES_PER_ACCOUNT.refund(ctx, account)
    # Only after the password is proven, so that probing cannot find inactive accounts.
    if not user.is_active:
        audit(uow, "auth.login.failed", caller, subject_id=user.id, reason="inactive")
        raise await uow.refuse(Problem(403, detail="The account is inactive."))
    if domain.password_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    roles = (await roles_of(uow.session, [user.id]))[user.id]
    tokens = await new_session_tokens(ctx, uow, user, utc_now(), roles=roles)
    audit(uow, "auth.login.succeeded", caller, subject_id=user.id, actor_id=user.id)
    return models.AuthSession(user=as_user(user, roles), tokens=tokens)


async def refresh(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, body: models.RefreshRequest
) -> models.TokenPair:
    await REFRESH_LIMIT.hit(ctx, caller.client_ip)
    now = utc_now()
    # The row lock serialises two concurrent uses of one token: the second sees it rotated.
    row = (
        await uow.session.scalars(
            select(RefreshToken)
            .where(col(RefreshToken.token_hash) == domain.token_hash(body.refresh_token))
            .with_for_update()
        )
    ).first()
    if row is None:
        raise unauthorized(INVALID_REFRESH_TOKEN)
    outcome = domain.refresh_outcome(refresh_record(row), now)
    if outcome is RefreshOutcome.REUSED:  # a stolen copy is in use: the whole family dies,
        await end_family(ctx, uow, row.family_id, now)  # the access tokens it minted too
        family = str(row.family_id)
        audit(uow, "auth.refresh_token.reused", caller, subject_id=row.user_id, family_id=family)
        raise await uow.refuse(unauthorized(INVALID_REFRESH_TOKEN))
    if outcome is not RefreshOutcome.ROTATE:
        raise unauthorized(INVALID_REFRESH_TOKEN)
    user = await uow.session.get(User, row.user_id)
    if user is None or user.deleted_at is not None or not user.is_active:
        raise unauthorized(INVALID_REFRESH_TOKEN)
    roles = (await roles_of(uow.session, [user.id]))[user.id]
    return await new_session_tokens(ctx, uow, user, now, roles=roles, parent=row)


async def logout(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, body: models.LogoutRequest | None
) -> None:
    """Ends the session the access token belongs to (its refresh-token family, and every
    access token issued in it) and, with a refresh token of the caller's from another
    session, that session too (someone else's token, or garbage, is ignored: logout reveals
    nothing). The presented token is blacklisted in any case."""
    principal = caller.principal
    if principal is None:
        raise unauthorized("Authentication is required.")
    now = utc_now()
    refresh_token = None if body is None or body.refresh_token is MISSING else body.refresh_token
    families: set[UUID] = set()
    if caller.user_id is not None and principal.token_id is not None:
        family = await family_of_access_token(uow.session, caller.user_id, principal.token_id)
        if family is not None:
            families.add(family)
    if refresh_token is not None and caller.user_id is not None:
        row = (
            await uow.session.scalars(
                select(RefreshToken).where(
                    col(RefreshToken.token_hash) == domain.token_hash(refresh_token),
                    col(RefreshToken.user_id) == caller.user_id,
                )
            )
        ).first()
        if row is not None:
            families.add(row.family_id)
    for family_id in sorted(families):
        await end_family(ctx, uow, family_id, now)
    audit(uow, "auth.logout", caller, subject_id=caller.user_id)
    if principal.token_id is not None and principal.expires_at is not None:
        uow.after_commit(partial(blacklist, ctx, principal.token_id, principal.expires_at))


# --- e-mail verification and password reset -------------------------------------------------


async def verify_email(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, body: models.VerifyEmailRequest
) -> models.User:
    await VERIFY_LIMIT.hit(ctx, caller.client_ip)
    now = utc_now()
    user = await consume_one_time_token(
        uow.session, body.token, TokenPurpose.EMAIL_VERIFICATION, now
    )
    if user is None:
        raise Problem(422, detail="The verification token is invalid or has expired.")
    if user.email_verified_at is None:
        user.email_verified_at = now
        touch(user, now)
    return await user_model(uow.session, user)


async def resend_verification_email(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller
) -> models.Accepted:
    user_id = caller.user_id
    if user_id is None:
        raise Problem(403, detail="An API key has no e-mail address to verify.")
    await RESEND_LIMIT.hit(ctx, user_id)
    user = await uow.session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise unauthorized("The user of this token no longer exists.")
    if user.email_verified_at is not None:
        raise Problem(409, detail="The e-mail address is already verified.")
    token, expires_at = await issue_one_time_token(
        uow.session, user, TokenPurpose.EMAIL_VERIFICATION, domain.EMAIL_VERIFICATION_TTL, utc_now()
    )
    user_events.verification_requested(uow, user, token, expires_at)
    return ACCEPTED


async def forgot_password(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, body: models.ForgotPasswordRequest
) -> models.Accepted:
    """Always accepted, in the same time for any address (no user enumeration): the request is
    queued and a job e-mails a live account (`password_resets`)."""
    await FORGOT_LIMIT.hit(ctx, caller.client_ip)
    email = domain.normalise_email(body.email)
    try:
        # Per address and client, silently: nobody floods an inbox, and nobody spends the
        # account owner's own requests (keyed on the e-mail alone, three requests by anyone
        # would block the owner's reset for an hour).
        await FORGOT_PER_EMAIL_AND_IP_LIMIT.hit(
            ctx, domain.token_hash(email)[:32], caller.client_ip
        )
    except Problem:
        return ACCEPTED
    await password_resets.queue_reset(ctx, caller, email)
    return ACCEPTED


async def reset_password(
    ctx: ServiceContext, uow: UnitOfWork, caller: Caller, body: models.ResetPasswordRequest
) -> None:
    await RESET_LIMIT.hit(ctx, caller.client_ip)
    now = utc_now()
    user = await consume_one_time_token(uow.session, body.token, TokenPurpose.PASSWORD_RESET, now)
    if user is None or not user.is_active:
        raise Problem(422, detail="The reset token is invalid or has expired.")
    password = body.password.get_secret_value()
    check_password(password, user.email)
    user.password_hash = await hash_password(password)
    touch(user, now)
    await end_sessions(ctx, uow, user.id, now)
    audit(uow, "auth.password.reset", caller, subject_id=user.id, actor_id=user.id)
    roles = (await roles_of(uow.session, [user.id]))[user.id]
    user_events.updated(uow, user, roles, ["password"])

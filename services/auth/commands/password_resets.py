"""Forgotten passwords: the request is queued, the reset e-mail is prepared by a job.

`POST /auth/forgot-password` must not tell whether an address has an account, neither by its
answer (always 202) nor by how long it takes. So the request does the same for every address:
rate limits and one item pushed on a Redis list — no database work at all. The job
`send_requested_resets` (every second) looks the address up and, for a live account, issues
the reset token, writes the `auth.user.password_reset_requested` event (the outbox; the
notification service sends the e-mail) and the audit row, under the request's ids.

Delivery is at most once: an item whose processing fails is logged and dropped, as a lost
e-mail would be; the user asks again.
"""

from __future__ import annotations

import json
from typing import Final

from generated.events import publishers as events
from generated.events.models import AuthUserPasswordResetRequestedPayload
from services.auth import domain
from services.auth.commands.common import audit, user_by_email
from services.auth.commands.credentials import issue_one_time_token
from services.auth.domain import TokenPurpose
from services.platform import Caller, ServiceContext, UnitOfWork, on_behalf_of, utc_now

# Items taken per run: a burst waits for the next second rather than holding the job.
BATCH: Final = 100


def _queue(ctx: ServiceContext) -> str:
    return ctx.keys("auth", "password-reset-requests")


async def queue_reset(ctx: ServiceContext, caller: Caller, email: str) -> None:
    """Queue a reset for `email` (normalised); the same single Redis command for any address."""
    item = {
        "email": email,
        "ip": caller.client_ip,
        "request_id": caller.request_id,
        "correlation_id": caller.correlation_id,
    }
    await ctx.redis.rpush(_queue(ctx), json.dumps(item))


async def send_requested_resets(ctx: ServiceContext) -> None:
    """The periodic job: prepare the reset e-mail of every queued request for a live account."""
    for _ in range(BATCH):
        raw = await ctx.redis.lpop(_queue(ctx))
        if not isinstance(raw, (str, bytes)):  # empty (a count-less LPOP never gives a list)
            return
        item = json.loads(raw)
        caller = Caller(
            principal=None,
            client_ip=item["ip"],
            request_id=item["request_id"],
            correlation_id=item["correlation_id"],
        )
        try:
            with on_behalf_of(caller):
                async with ctx.unit_of_work() as uow:
                    await _prepare_reset(uow, caller, item["email"])
                    await uow.commit()
        except Exception:
            ctx.log.exception("dropped a password reset request (request %s)", caller.request_id)


async def _prepare_reset(uow: UnitOfWork, caller: Caller, email: str) -> None:
    user = await user_by_email(uow.session, email)
    if user is None or user.deleted_at is not None or not user.is_active:
        return
    token, expires_at = await issue_one_time_token(
        uow.session, user, TokenPurpose.PASSWORD_RESET, domain.PASSWORD_RESET_TTL, utc_now()
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
    audit(uow, "auth.password.reset_requested", caller, subject_id=user.id)

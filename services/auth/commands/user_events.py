"""The user events more than one command emits (to the outbox, in the command's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from generated.events import publishers as events
from generated.events.models import (
    AuthUserEmailVerificationRequestedPayload,
    AuthUserRegisteredPayload,
    AuthUserUpdatedPayload,
)
from services.auth.tables import User
from services.platform import UnitOfWork


def registered(uow: UnitOfWork, user: User, token: str, expires_at: datetime) -> None:
    """Self-service or created by an administrator; carries the e-mail verification token."""
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


def updated(uow: UnitOfWork, user: User, roles: Sequence[str], changed: Sequence[str]) -> None:
    events.publish_auth_user_updated(
        uow,
        AuthUserUpdatedPayload(
            user_id=user.id,
            name=user.name,
            email=user.email,
            is_active=user.is_active,
            roles=list(roles),
            changed_fields=list(changed),
        ),
    )


def verification_requested(uow: UnitOfWork, user: User, token: str, expires_at: datetime) -> None:
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

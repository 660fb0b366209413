"""The notification part of the demo data set: the notifications whose ids the spec's examples
use (specs/openapi/notification.yaml) — Maria's welcome e-mail (sent) and João's payment-failed
e-mail (failed, so the retry example has one to retry).

Loaded by embedded `erp up` and by `erp demo seed` (docs/adr/0008-docs-that-work.md);
idempotent: what exists already is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from generated.notification import models
from services.notification import templates
from services.notification.commands.notifications import notifier_of
from services.notification.history import Content, Record, load, save
from services.platform import ServiceContext

WELCOME = UUID("e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7")
PAYMENT_FAILED = UUID("f2a3b4c5-d6e7-4f80-9102-b3c4d5e6f7a8")
SENT_AT = datetime(2025, 1, 15, 12, 0, 1, tzinfo=UTC)
FAILED_AT = datetime(2025, 1, 15, 12, 0, 2, tzinfo=UTC)
DEMO_TOKEN = "q9Zr3kV0bW2mN8xT5yL1aP4sD7fG6hJ2"  # the auth.user.registered example's
CORRELATION = UUID("6e7f8091-a2b3-4c4d-9e5f-60718293a4b5")


def _content(template: str, variables: dict[str, object]) -> Content:
    rendered = templates.render(template, "email", variables)
    return Content(subject=rendered.subject, text=rendered.text, html=rendered.html)


async def seed_demo(ctx: ServiceContext) -> None:
    settings = notifier_of(ctx).settings
    welcome = _content(
        "auth.user.registered",
        {
            "name": "Maria Silva",
            "verification_expires_at": "2025-01-16T12:00:00Z",
            "verify_url": f"{settings.public_url}/verify-email?token={DEMO_TOKEN}",
        },
    )
    failed = _content(
        "financial.payment.failed",
        {
            "order_number": "ORD-2025-000042",
            "amount": "724.80",
            "currency": "BRL",
            "method": "pix",
            "reason": "card_declined",
            "order_url": f"{settings.public_url}/orders/c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
        },
    )
    demo = (
        Record(
            id=WELCOME,
            channel=models.Channel.email,
            recipient="maria@example.com",
            template="auth.user.registered",
            subject=welcome.subject,
            event_name="auth.user.registered",
            event_id=UUID("3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b"),
            correlation_id=CORRELATION,
            status=models.NotificationStatus.sent,
            attempts=1,
            created_at=SENT_AT,
            updated_at=SENT_AT,
            sent_at=SENT_AT,
            content=welcome,
        ),
        Record(
            id=PAYMENT_FAILED,
            channel=models.Channel.email,
            recipient="joao@example.com",
            template="financial.payment.failed",
            subject=failed.subject,
            event_name="financial.payment.failed",
            event_id=UUID("4a2d3c5b-6e7f-4081-9a2b-1c2d3e4f5a6b"),
            correlation_id=CORRELATION,
            status=models.NotificationStatus.failed,
            attempts=4,
            last_error="SMTP server unreachable: SMTPConnectError",
            created_at=FAILED_AT,
            updated_at=FAILED_AT,
            content=failed,
        ),
    )
    for record in demo:
        if await load(ctx, record.id) is None:
            await save(ctx, record, settings.history_limit)

"""HTTP handlers of the notification service: one small coroutine per operationId.

The service has no database, so the kit opens no unit of work for its writes: every handler
takes the plain `Call` (a `WriteCall` is a `Call`, so the generated Protocol accepts it)."""

from __future__ import annotations

from uuid import UUID

from generated.notification import models
from services.notification import queries
from services.notification.commands import notifications
from services.platform import Call, Page, Reply


async def list_notifications(
    call: Call,
    *,
    recipient: str | None = None,
    status: str | None = None,
    event: str | None = None,
    channel: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.NotificationList:
    return await queries.list_notifications(
        call.ctx,
        Page.of(page, per_page),
        recipient=recipient,
        status=status,
        event=event,
        channel=channel,
    )


async def send_notification(call: Call, *, body: models.NotificationSend) -> models.Notification:
    return await notifications.send_adhoc(call.ctx, call.caller, body)


async def get_notification(call: Call, *, notification_id: UUID) -> models.Notification:
    return await queries.get_notification(call.ctx, notification_id)


async def retry_notification(call: Call, *, notification_id: UUID) -> models.Notification:
    return await notifications.retry(call.ctx, notification_id)


async def list_templates(call: Call) -> models.TemplateList:
    return queries.list_templates()


async def show_mailbox(call: Call) -> bytes | Reply:
    return queries.mailbox_page(await queries.mailbox(call.ctx))


async def list_mailbox_messages(call: Call) -> models.MailboxMessageList:
    return await queries.mailbox(call.ctx)

"""Reads of the notification service: the history, the templates, the dev mailbox."""

from __future__ import annotations

from uuid import UUID

from generated.notification import models
from services.notification import templates
from services.notification.channels import kept_mail
from services.notification.commands.notifications import notifier_of
from services.notification.history import load, newest
from services.notification.messages import EVENTS
from services.platform import Page, Problem, ServiceContext, normalise_email, resource_not_found


async def list_notifications(
    ctx: ServiceContext,
    page: Page,
    *,
    recipient: str | None,
    status: str | None,
    event: str | None,
    channel: str | None,
) -> models.NotificationList:
    wanted = None if recipient is None else normalise_email(recipient)
    found = [
        record
        for record in await newest(ctx)
        if (wanted is None or normalise_email(record.recipient) == wanted)
        and (status is None or record.status.value == status)
        and (event is None or record.event_name == event)
        and (channel is None or record.channel.value == channel)
    ]
    shown = found[page.offset : page.offset + page.limit]
    return models.NotificationList.model_validate(
        {"data": [record.public() for record in shown], "meta": page.meta(len(found))}
    )


async def get_notification(ctx: ServiceContext, notification: UUID) -> models.Notification:
    record = await load(ctx, notification)
    if record is None:
        raise resource_not_found("Notification", notification)
    return record.public()


def list_templates() -> models.TemplateList:
    return models.TemplateList.model_validate(
        {
            "data": [
                {
                    "name": info.name,
                    "event": info.name if info.name in EVENTS else None,
                    "channel": info.channel,
                    "variables": list(info.variables),
                }
                for info in templates.catalogue()
            ]
        }
    )


async def mailbox(ctx: ServiceContext) -> models.MailboxMessageList:
    """The kept e-mails, newest first; a 404 where e-mail goes over SMTP instead."""
    key = notifier_of(ctx).mailbox_key
    if key is None:
        raise Problem(404, detail="E-mail is not kept locally here (an SMTP server is configured).")
    return models.MailboxMessageList.model_validate({"data": await kept_mail(ctx.redis, key)})


def mailbox_page(messages: models.MailboxMessageList) -> bytes:
    page = templates.environment().get_template("dev/mailbox.html")
    return page.render(messages=messages.model_dump(mode="json")["data"]).encode()

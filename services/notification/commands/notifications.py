"""Sending notifications and recording them: from an event, ad hoc, and again by hand.

There is no database, so these take the service context (not a unit of work). Exactly once per
recipient: an event's notification to one recipient on one channel has a fixed id, and once it
is delivered a marker (`notification:sent:<id>`) says so — a retried event (the e-mail went, the
webhook failed) skips what was delivered and tries only the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final
from uuid import UUID, uuid4

from pydantic import MISSING, BaseModel

from generated.events.models import EventEnvelope
from generated.notification import models
from services.notification import templates
from services.notification.channels import (
    Channel,
    ChannelError,
    EmailChannel,
    LoggingSmsProvider,
    MailboxMailer,
    Mailer,
    SmsChannel,
    SmtpMailer,
    WebhookChannel,
    WebhookSender,
    check_target,
)
from services.notification.domain import (
    can_retry,
    notification_id,
    phone_problem,
    text_problem,
)
from services.notification.history import RECORD_TTL_SECONDS, Content, Record, load, save
from services.notification.messages import outgoing
from services.notification.settings import NotificationSettings, load_notification_settings
from services.platform import (
    Caller,
    DeadLetter,
    FieldError,
    Problem,
    ServiceContext,
    check_rules,
    resource_not_found,
    stored_email,
    utc_now,
)

NOTIFIER: Final = "notification.notifier"  # the ctx.state entry


@dataclass
class Notifier:
    settings: NotificationSettings
    channels: dict[models.Channel, Channel]
    webhooks: WebhookSender
    mailbox_key: str | None  # the Redis list of kept e-mails; None: not kept here


class NotificationFailedError(Exception):
    """Some channel failed; the kit retries the event (what was delivered is not sent again)."""


def notifier_of(ctx: ServiceContext) -> Notifier:
    notifier: Notifier = ctx.state[NOTIFIER]
    return notifier


def build_notifier(
    ctx: ServiceContext, settings: NotificationSettings, webhooks: WebhookSender | None = None
) -> Notifier:
    keeps_mail = ctx.settings.embedded or settings.smtp_host is None or settings.keep_mail
    mailbox_key = ctx.keys("notification", "mailbox") if keeps_mail else None
    mailers: list[Mailer] = []
    if settings.smtp_host is not None:
        mailers.append(
            SmtpMailer(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_user,
                settings.smtp_password,
                settings.smtp_starttls,
                settings.smtp_timeout,
            )
        )
    if mailbox_key is not None:
        mailers.append(MailboxMailer(ctx.redis, mailbox_key))
    webhooks = webhooks or WebhookSender(settings.webhook_secret, settings.webhook_allow)
    return Notifier(
        settings=settings,
        channels={
            models.Channel.email: EmailChannel(settings.sender, mailers),
            models.Channel.webhook: WebhookChannel(webhooks),
            models.Channel.sms: SmsChannel(LoggingSmsProvider()),
        },
        webhooks=webhooks,
        mailbox_key=mailbox_key,
    )


async def start_notifier(ctx: ServiceContext) -> None:
    """Start-up hook: a bad variable stops the service, naming each."""
    ctx.state[NOTIFIER] = build_notifier(ctx, load_notification_settings())


# ------------------------------------------------------------------ delivering


@dataclass(frozen=True, slots=True)
class Outcome:
    record: Record
    error: ChannelError | None = None


async def deliver(ctx: ServiceContext, record: Record) -> Outcome:
    """One attempt at `record` (skipped when its marker says it was delivered), recorded."""
    notifier = notifier_of(ctx)
    limit = notifier.settings.history_limit
    marker = ctx.keys("notification", "sent", str(record.id))
    if await ctx.redis.exists(marker):
        if record.status != models.NotificationStatus.sent:
            record = record.model_copy(update={"status": models.NotificationStatus.sent})
            await save(ctx, record, limit)
        return Outcome(record)
    queued = record.model_copy(
        update={
            "status": models.NotificationStatus.queued,
            "attempts": record.attempts + 1,
            "updated_at": utc_now(),
        }
    )
    await save(ctx, queued, limit)
    try:
        await notifier.channels[record.channel].deliver(queued)
    except ChannelError as error:
        failed = queued.model_copy(
            update={
                "status": models.NotificationStatus.failed,
                "last_error": error.reason,
                "updated_at": utc_now(),
            }
        )
        await save(ctx, failed, limit)
        return Outcome(failed, error)
    await ctx.redis.set(marker, "1", ex=RECORD_TTL_SECONDS)
    now = utc_now()
    sent = queued.model_copy(
        update={
            "status": models.NotificationStatus.sent,
            "last_error": None,
            "updated_at": now,
            "sent_at": now,
        }
    )
    await save(ctx, sent, limit)
    return Outcome(sent)


def _new_record(
    identifier: UUID,
    channel: models.Channel,
    recipient: str,
    content: Content,
    *,
    template: str | None,
    event_name: str | None = None,
    event_id: UUID | None = None,
    correlation_id: UUID | None = None,
) -> Record:
    now = utc_now()
    return Record(
        id=identifier,
        channel=channel,
        recipient=recipient,
        template=template,
        subject=content.subject,
        event_name=event_name,
        event_id=event_id,
        correlation_id=correlation_id,
        status=models.NotificationStatus.queued,
        created_at=now,
        updated_at=now,
        content=content,
    )


# ------------------------------------------------------------------ from events


async def notify_event(ctx: ServiceContext, event: EventEnvelope, payload: BaseModel) -> None:
    """Send what the event says (its e-mail, and its webhooks) and record each; raise when a
    channel failed so that the kit retries (or dead-letters when no retry can help)."""
    notifier = notifier_of(ctx)
    records: list[Record] = []
    message = outgoing(event.event_name, payload, notifier.settings)
    for address in message.recipients:
        try:
            rendered = templates.render(message.template, "email", message.variables)
        except templates.RenderError as error:
            raise DeadLetter(str(error)) from error
        content = Content(subject=rendered.subject, text=rendered.text, html=rendered.html)
        records.append(
            await _event_record(
                ctx, event, models.Channel.email, address, content, message.template
            )
        )
    for url in notifier.settings.webhooks_for(event.event_name):
        body = json.dumps(
            {
                "event_id": str(event.event_id),
                "event_name": event.event_name,
                "occurred_at": event.model_dump(mode="json")["occurred_at"],
                "correlation_id": str(event.correlation_id),
                "payload": payload.model_dump(mode="json"),
            },
            separators=(",", ":"),
        )
        records.append(
            await _event_record(ctx, event, models.Channel.webhook, url, Content(body=body), None)
        )
    failures = [
        outcome.error for outcome in [await deliver(ctx, r) for r in records] if outcome.error
    ]
    if failures:
        reasons = "; ".join(error.reason for error in failures)
        if all(error.permanent for error in failures):
            raise DeadLetter(reasons)
        raise NotificationFailedError(reasons)


async def _event_record(
    ctx: ServiceContext,
    event: EventEnvelope,
    channel: models.Channel,
    recipient: str,
    content: Content,
    template: str | None,
) -> Record:
    identifier = notification_id(event.event_id, channel.value, recipient)
    existing = await load(ctx, identifier)
    if existing is not None:
        return existing  # a retried event: the same notification, its attempts counted on
    return _new_record(
        identifier,
        channel,
        recipient,
        content,
        template=template,
        event_name=event.event_name,
        event_id=event.event_id,
        correlation_id=event.correlation_id,
    )


# ------------------------------------------------------------------ ad hoc and retries


@dataclass(frozen=True, slots=True)
class AdHoc:
    """An ad hoc send's body, what it left out as None."""

    channel: models.Channel
    recipient: str
    template: str | None
    variables: dict[str, str] | None
    subject: str | None
    text: str | None

    @classmethod
    def of(cls, body: models.NotificationSend) -> AdHoc:
        variables = None
        if body.variables is not MISSING:
            variables = {name: str(value) for name, value in body.variables.items()}
        return cls(
            body.channel,
            body.recipient,
            None if body.template is MISSING else body.template,
            variables,
            None if body.subject is MISSING else body.subject,
            None if body.text is MISSING else body.text,
        )


async def send_adhoc(
    ctx: ServiceContext, caller: Caller, request: models.NotificationSend
) -> models.Notification:
    notifier = notifier_of(ctx)
    body = AdHoc.of(request)
    recipient, errors = await _recipient(notifier, body)
    content, template = _content(body, errors)
    check_rules(errors)
    assert content is not None  # check_rules refused every way of getting none
    if body.channel == models.Channel.webhook:
        content = Content(
            body=json.dumps(
                {"subject": content.subject, "text": content.text}, separators=(",", ":")
            )
        )
    correlation = caller.correlation_id
    record = _new_record(
        uuid4(),
        body.channel,
        recipient,
        content,
        template=template,
        correlation_id=UUID(correlation) if correlation and _is_uuid(correlation) else None,
    )
    return (await deliver(ctx, record)).record.public()


async def _recipient(notifier: Notifier, body: AdHoc) -> tuple[str, list[FieldError]]:
    errors: list[FieldError] = []
    recipient = body.recipient
    if body.channel == models.Channel.email:
        stored = stored_email(recipient, "recipient")
        if isinstance(stored, FieldError):
            errors.append(stored)
        else:
            recipient = stored
    elif body.channel == models.Channel.sms:
        problem = phone_problem(recipient)
        if problem is not None:
            errors.append(problem)
    else:
        if notifier.settings.webhook_secret is None:
            errors.append(FieldError("channel", "webhooks are not configured here"))
        checked = await check_target(
            recipient, notifier.settings.webhook_allow, notifier.webhooks.resolver
        )
        if isinstance(checked, FieldError):
            errors.append(checked)
    return recipient, errors


def _content(body: AdHoc, errors: list[FieldError]) -> tuple[Content | None, str | None]:
    """What to send: the template rendered with the variables, or the plain subject and text."""
    if body.template is not None:
        if body.subject is not None or body.text is not None:
            errors.append(FieldError("template", "give a template or a subject and text, not both"))
            return None, None
        channel = "email" if body.channel == models.Channel.email else body.channel.value
        info = templates.find(body.template, channel)
        if info is None:
            errors.append(FieldError("template", f"is not a template of the {channel} channel"))
            return None, None
        given = body.variables or {}
        missing = sorted(set(info.variables) - set(given))
        unknown = sorted(set(given) - set(info.variables))
        if missing:
            errors.append(FieldError("variables", f"lacks {', '.join(missing)}"))
        if unknown:
            errors.append(FieldError("variables", f"has unknown {', '.join(unknown)}"))
        if missing or unknown:
            return None, None
        try:
            rendered = templates.render(body.template, channel, dict(given))
        except templates.RenderError:
            errors.append(FieldError("variables", "do not render the template"))
            return None, None
        return Content(subject=rendered.subject, text=rendered.text, html=rendered.html), info.name
    if body.variables is not None:
        errors.append(FieldError("variables", "are only used with a template"))
    if body.text is None:
        errors.append(FieldError("text", "is required without a template"))
    if body.channel == models.Channel.email and body.subject is None:
        errors.append(FieldError("subject", "is required for an e-mail without a template"))
    if body.channel == models.Channel.sms and body.subject is not None:
        errors.append(FieldError("subject", "is not allowed for an SMS"))
    for field, value in (("subject", body.subject), ("text", body.text)):
        problem = value and text_problem(value, field)
        if problem:
            errors.append(problem)
    if errors or body.text is None:
        return None, None
    html = None
    if body.channel == models.Channel.email:
        html = templates.plain_html(body.text)
    return Content(subject=body.subject, text=body.text, html=html), None


async def retry(ctx: ServiceContext, notification: UUID) -> models.Notification:
    record = await load(ctx, notification)
    if record is None:
        raise resource_not_found("Notification", notification)
    if not can_retry(record.status.value, record.retries):
        raise Problem(409, detail="Only a failed notification can be retried, at most 3 times.")
    retried = record.model_copy(update={"retries": record.retries + 1})
    return (await deliver(ctx, retried)).record.public()


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True

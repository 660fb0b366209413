"""The history of recent notifications, in Redis and bounded: a sorted set of the newest ids
(score: creation time) and one JSON document per notification with a TTL. Adding one beyond the
limit drops the oldest; a document outlives its id by nothing (both expire or go together)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from generated.notification import models
from services.platform import ServiceContext

RECORD_TTL_SECONDS: Final = 7 * 24 * 3600


class Content(BaseModel):
    """What was sent, as rendered (a retry sends it again). Never shown by the API: it may hold a
    one-time token."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = None
    text: str = ""
    html: str | None = None
    body: str | None = None  # a webhook's JSON


class Record(BaseModel):
    """A notification as kept: the API's fields plus its content."""

    model_config = ConfigDict(extra="forbid")

    id: UUID
    channel: models.Channel
    recipient: str
    template: str | None
    subject: str | None
    event_name: str | None
    event_id: UUID | None
    correlation_id: UUID | None
    status: models.NotificationStatus
    attempts: int = 0
    retries: int = 0
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    content: Content

    def public(self) -> models.Notification:
        return models.Notification.model_validate(self.model_dump(exclude={"content"}))


def _index(ctx: ServiceContext) -> str:
    return ctx.keys("notification", "history")


def _document(ctx: ServiceContext, notification: UUID | str) -> str:
    return ctx.keys("notification", "notification", str(notification))


async def save(ctx: ServiceContext, record: Record, limit: int) -> None:
    """Store `record` (new or updated), keeping only the newest `limit` notifications."""
    index = _index(ctx)
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.set(_document(ctx, record.id), record.model_dump_json(), ex=RECORD_TTL_SECONDS)
        pipe.zadd(index, {str(record.id): record.created_at.timestamp()})
        await pipe.execute()
    dropped: list[Any] = await ctx.redis.zrange(index, 0, -limit - 1)
    if dropped:
        async with ctx.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(index, *dropped)
            pipe.delete(*(_document(ctx, _text(item)) for item in dropped))
            await pipe.execute()


async def load(ctx: ServiceContext, notification: UUID) -> Record | None:
    raw = await ctx.redis.get(_document(ctx, notification))
    return None if raw is None else Record.model_validate_json(raw)


async def newest(ctx: ServiceContext) -> list[Record]:
    """Every kept notification, newest first (the history is bounded, so this is too)."""
    ids: list[Any] = await ctx.redis.zrevrange(_index(ctx), 0, -1)
    if not ids:
        return []
    raws = await ctx.redis.mget([_document(ctx, _text(item)) for item in ids])
    return [Record.model_validate_json(raw) for raw in raws if raw is not None]


def _text(item: bytes | str) -> str:
    return item.decode() if isinstance(item, bytes) else item

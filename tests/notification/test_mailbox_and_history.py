"""The dev mailbox of embedded mode (e-mail kept, shown at /dev/mailbox with its links
clickable) and the bounded history, on the in-process broker and Redis stand-in."""

from __future__ import annotations

import json
import uuid
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from generated.events.publishers import EVENTS
from generated.notification import models
from services.notification import history
from services.notification.service import definition
from tests.support.embedded import StartEmbedded
from tests.support.polling import eventually

DOCUMENT = json.loads(
    (Path(__file__).parents[2] / "generated" / "specs" / "erp.asyncapi.json").read_text()
)


def registered(address: str) -> dict[str, Any]:
    [message] = [
        m
        for m in DOCUMENT["components"]["messages"].values()
        if m["name"] == "auth.user.registered"
    ]
    envelope: dict[str, Any] = deepcopy(message["examples"][0]["payload"])
    envelope["event_id"] = str(uuid.uuid4())
    envelope["payload"]["email"] = address
    return envelope


async def test_embedded_mode_keeps_email_in_the_dev_mailbox_with_clickable_links(
    embedded: StartEmbedded,
) -> None:
    notification = await embedded(definition, http=True)
    spec = EVENTS["auth.user.registered"]
    envelope = registered("new.user@example.com")
    await notification.ctx.bus.publish(
        spec.exchange,
        spec.routing_key,
        json.dumps(envelope).encode(),
        message_id=envelope["event_id"],
    )

    async def kept() -> list[dict[str, Any]] | None:
        found = await notification.http.get("/dev/mailbox/messages")
        assert found.status_code == 200, found.text
        data: list[dict[str, Any]] = found.json()["data"]
        return data or None

    [mail] = await eventually(kept, what="the kept welcome e-mail")
    token = envelope["payload"]["email_verification_token"]
    link = f"http://localhost:5173/verify-email?token={token}"
    assert mail["to"] == "new.user@example.com"
    assert mail["links"] == [link]
    page = await notification.http.get("/dev/mailbox")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'<a href="{link}">' in page.text
    assert "Welcome, Maria Silva" in page.text


async def test_the_mailbox_page_escapes_what_it_shows(embedded: StartEmbedded) -> None:
    notification = await embedded(definition, http=True)
    hostile = registered("x@example.com")
    hostile["payload"]["name"] = "<script>alert(1)</script>"
    spec = EVENTS["auth.user.registered"]
    await notification.ctx.bus.publish(
        spec.exchange,
        spec.routing_key,
        json.dumps(hostile).encode(),
        message_id=hostile["event_id"],
    )

    async def page() -> str | None:
        shown = (await notification.http.get("/dev/mailbox")).text
        return shown if "alert(1)" in shown else None

    shown = await eventually(page, what="the hostile e-mail on the page")
    assert "<script>alert(1)</script>" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown


def record(created: datetime) -> history.Record:
    return history.Record(
        id=uuid.uuid4(),
        channel=models.Channel.email,
        recipient="a@example.com",
        template=None,
        subject="s",
        event_name=None,
        event_id=None,
        correlation_id=None,
        status=models.NotificationStatus.sent,
        created_at=created,
        updated_at=created,
        content=history.Content(subject="s", text="t"),
    )


async def test_the_history_keeps_only_the_newest_and_drops_the_rest(
    embedded: StartEmbedded,
) -> None:
    notification = await embedded(definition)
    ctx = notification.ctx
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = [record(start + timedelta(seconds=i)) for i in range(15)]
    for each in records:
        await history.save(ctx, each, limit=10)
    kept = await history.newest(ctx)
    assert [r.id for r in kept] == [r.id for r in reversed(records[5:])]
    assert await history.load(ctx, records[4].id) is None  # its document went with its id
    assert await history.load(ctx, records[5].id) == records[5]
    assert await ctx.redis.ttl(ctx.keys("notification", "notification", str(records[5].id))) > 0

"""The notification service as `erp serve notification` runs it (uvicorn in a thread, its
consumers on the real RabbitMQ, its history in the real Redis), e-mailing a real SMTP server
(aiosmtpd, read back here) and posting webhooks to a local receiver the allow-list lets it
reach. Events are published as their producers publish them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from generated.events.publishers import EVENTS
from services.notification import domain
from services.notification.service import definition
from services.platform.core.settings import Settings, load_settings
from services.platform.runtime.app import create_app
from tests.support.http import Api, unique_email
from tests.support.mailsink import (
    Received,
    SmtpSink,
    WebhookReceiver,
    parts,
    smtp_sink,
    webhook_receiver,
)
from tests.support.polling import eventually
from tests.support.processes import ServerThread
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

SECRET = "partners-shared-secret-0123456789"
STAFF = unique_email("stock")
ASYNCAPI = Path(__file__).parents[2] / "generated" / "specs" / "erp.asyncapi.json"
DOCUMENT = json.loads(ASYNCAPI.read_text())


def example(event: str) -> dict[str, Any]:
    for message in DOCUMENT["components"]["messages"].values():
        if message["name"] == event:
            found: dict[str, Any] = deepcopy(message["examples"][0]["payload"])
            return found
    raise AssertionError(event)


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def settings(
    scoped_env: Callable[[str], Mapping[str, str]],
    auth_server: ServerThread,
    sink: SmtpSink,
    receiver: WebhookReceiver,
) -> Iterator[Settings]:
    notification = {
        "ERP_NOTIFICATION_SMTP_HOST": sink.host,
        "ERP_NOTIFICATION_SMTP_PORT": str(sink.port),
        "ERP_NOTIFICATION_SMTP_STARTTLS": "0",
        "ERP_NOTIFICATION_STAFF_EMAIL": STAFF,
        "ERP_NOTIFICATION_PUBLIC_URL": "https://shop.example.com",
        "ERP_NOTIFICATION_WEBHOOK_SECRET": SECRET,
        # Delivered shipments also go to a private address nobody allowed: refused every time.
        "ERP_NOTIFICATION_WEBHOOKS": f"logistics.shipment.dispatched={receiver.url}/dispatched,"
        "logistics.shipment.delivered=http://10.255.255.1/hook",
        "ERP_NOTIFICATION_WEBHOOK_ALLOW": "127.0.0.1/32",
        "ERP_NOTIFICATION_HISTORY_LIMIT": "500",
    }
    env = {**scoped_env("notification_service"), "ERP_AUTH_URL": auth_server.url}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in notification.items():
            monkeypatch.setenv(name, value)  # the service's own settings are read at start-up
        yield load_settings("notification", 8006, env)


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(definition, settings)).start() as running:
        yield running


@pytest.fixture
def api(server: ServerThread, admin_token: str) -> Iterator[Api]:
    with Api(server.url, admin_token) as client:
        yield client


@pytest.fixture(scope="module")
async def channel(
    server: ServerThread, settings: Settings
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    assert settings.amqp_url is not None
    connection = await aio_pika.connect_robust(settings.amqp_url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish(channel: aio_pika.abc.AbstractChannel, envelope: dict[str, Any]) -> None:
    spec = EVENTS[envelope["event_name"]]
    await publish_body(
        channel,
        spec.exchange,
        spec.routing_key,
        json.dumps(envelope).encode(),
        message_id=envelope["event_id"],
    )


def fresh(event: str, **payload: Any) -> dict[str, Any]:
    envelope = example(event)
    envelope["event_id"] = str(uuid.uuid4())
    envelope["payload"].update(payload)
    return envelope


def history(api: Api, **filters: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/notifications", params={**filters, "per_page": "100"})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


SUBJECTS = {
    "auth.user.registered": "Welcome, Maria Silva — confirm your e-mail address",
    "auth.user.password_reset_requested": "Reset your password",
    "auth.user.email_verification_requested": "Confirm your e-mail address",
    "financial.payment.processed": "Order ORD-2025-000042: payment approved",
    "financial.payment.failed": "Order ORD-2025-000042: the payment was not approved",
    "sales.order.created": "We received your order ORD-2025-000042",
    "sales.order.confirmed": "Order ORD-2025-000042 is confirmed",
    "sales.order.cancelled": "Order ORD-2025-000042 was cancelled",
    "sales.order.completed": "Order ORD-2025-000042 is complete",
    "logistics.shipment.dispatched": "Order ORD-2025-000042 is on its way",
    "logistics.shipment.delivered": "Order ORD-2025-000042 was delivered",
}


@pytest.mark.parametrize("event", sorted(SUBJECTS))
async def test_each_event_emails_the_person_it_concerns(
    event: str, channel: aio_pika.abc.AbstractChannel, sink: SmtpSink, api: Api
) -> None:
    address = unique_email(event.replace(".", "-").replace("_", "-"))
    field = "email" if event.startswith("auth.") else "customer_email"
    envelope = fresh(event, **{field: address})
    await publish(channel, envelope)
    [mail] = sink.wait_for(address)
    assert mail["Subject"] == SUBJECTS[event]
    assert mail["From"] == "ERP <no-reply@erp.local>"
    assert mail.is_multipart()
    text, html = parts(mail)
    assert "https://shop.example.com/" in text
    assert 'href="https://shop.example.com/' in html
    # The history says `sent` once the SMTP server has answered, a moment after it has the mail.
    await eventually(
        lambda: [e for e in history(api, recipient=address) if e["status"] != "queued"] or None,
        within=15,
        what=f"the history entry of {address} past queued",
    )
    [kept] = history(api, recipient=address)
    assert kept["event_name"] == event
    assert kept["event_id"] == envelope["event_id"]
    assert kept["correlation_id"] == envelope["correlation_id"]
    assert kept["status"] == "sent"
    assert kept["subject"] == SUBJECTS[event]


async def test_a_password_reset_links_to_the_reset_page_with_its_token(
    channel: aio_pika.abc.AbstractChannel, sink: SmtpSink
) -> None:
    address = unique_email("reset")
    envelope = fresh(
        "auth.user.password_reset_requested", email=address, reset_token="tok-" + "a" * 28
    )
    await publish(channel, envelope)
    [mail] = sink.wait_for(address)
    text, html = parts(mail)
    link = "https://shop.example.com/reset-password?token=tok-" + "a" * 28
    assert link in text
    assert f'href="{link}"' in html


async def test_a_low_stock_alert_emails_the_staff(
    channel: aio_pika.abc.AbstractChannel, sink: SmtpSink
) -> None:
    sku = "KB-LOW-" + uuid.uuid4().hex[:6].upper()
    await publish(channel, fresh("inventory.stock.low_alert", sku=sku))
    # Other tests' alerts go to the same staff address: this one is the mail naming its SKU.
    subjects = await eventually(
        lambda: [s for m in sink.to(STAFF) if sku in (s := str(m["Subject"]))] or None,
        within=15,
        what=f"the low-stock e-mail of {sku}",
    )
    assert len(subjects) == 1
    assert subjects[0].startswith(f"Low stock: {sku} (")


async def test_a_duplicate_event_sends_one_email(
    channel: aio_pika.abc.AbstractChannel, sink: SmtpSink, api: Api
) -> None:
    address = unique_email("duplicate")
    envelope = fresh("sales.order.confirmed", customer_email=address)
    await publish(channel, envelope)
    await publish(channel, envelope)
    sink.wait_for(address)
    # A marker event after both: once it is handled, the duplicate has been too.
    marker = unique_email("after-duplicate")
    await publish(channel, fresh("sales.order.confirmed", customer_email=marker))
    sink.wait_for(marker)
    assert len(sink.to(address)) == 1
    assert len(history(api, recipient=address)) == 1


async def test_a_half_failed_event_retried_sends_the_email_once_and_the_webhook_until_it_lands(
    channel: aio_pika.abc.AbstractChannel, sink: SmtpSink, receiver: WebhookReceiver, api: Api
) -> None:
    address = unique_email("half")
    receiver.failures["/dispatched"] = 2  # the first two attempts fail, the kit retries
    envelope = fresh("logistics.shipment.dispatched", customer_email=address)
    await publish(channel, envelope)
    deadline = time.monotonic() + 15
    while len(posts := of_event(receiver, envelope["event_id"])) < 3:
        assert time.monotonic() < deadline, f"3 posts expected, got {len(posts)}"
        await asyncio.sleep(0.05)
    assert len({p.headers["X-ERP-Delivery"] for p in posts}) == 1  # one delivery, retried
    assert len(sink.wait_for(address)) == 1
    webhook = next(n for n in _eventually_sent(api, envelope["event_id"], "webhook"))
    assert webhook["attempts"] == 3
    [email] = [
        n for n in history(api, event="logistics.shipment.dispatched") if n["recipient"] == address
    ]
    assert email["attempts"] == 1
    assert len(sink.to(address)) == 1


def of_event(receiver: WebhookReceiver, event_id: str) -> list[Received]:
    return [p for p in receiver.to("/dispatched") if json.loads(p.body)["event_id"] == event_id]


def _eventually_sent(api: Api, event_id: str, channel: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [
            n
            for n in history(api, channel=channel)
            if n["event_id"] == event_id and n["status"] == "sent"
        ]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no sent {channel} notification of {event_id}")


async def test_a_webhook_verifies_by_the_documented_recipe(
    channel: aio_pika.abc.AbstractChannel, receiver: WebhookReceiver
) -> None:
    envelope = fresh("logistics.shipment.dispatched", customer_email=unique_email("signed"))
    await publish(channel, envelope)
    deadline = time.monotonic() + 15
    while not of_event(receiver, envelope["event_id"]):
        assert time.monotonic() < deadline, "the webhook never came"
        await asyncio.sleep(0.05)
    [post] = of_event(receiver, envelope["event_id"])
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["X-ERP-Event"] == "logistics.shipment.dispatched"
    timestamp, signature = post.headers["X-ERP-Timestamp"], post.headers["X-ERP-Signature"]
    # The recipe of the spec: HMAC-SHA256 of "<timestamp>.<raw body>", within 300 s.
    assert domain.signature_valid(SECRET, timestamp, post.body, signature, now=time.time())
    assert not domain.signature_valid(
        SECRET, timestamp, post.body + b"x", signature, now=time.time()
    )
    body = json.loads(post.body)
    assert body["payload"]["tracking_code"] == envelope["payload"]["tracking_code"]


def test_the_list_filters_and_pages(api: Api) -> None:
    address = unique_email("adhoc-list")
    for text in ("one", "two", "three"):
        sent = api.created(
            "/api/v1/notifications",
            {"channel": "email", "recipient": address, "subject": f"Note {text}", "text": text},
        )
        assert sent["status"] == "sent"
    listed = history(api, recipient=address.upper())
    assert [n["subject"] for n in listed] == ["Note three", "Note two", "Note one"]  # newest first
    page = api.get(
        "/api/v1/notifications", params={"recipient": address, "per_page": "2", "page": "2"}
    )
    assert page.json()["meta"] == {"page": 2, "per_page": 2, "total": 3, "last_page": 2}
    assert [n["subject"] for n in page.json()["data"]] == ["Note one"]
    assert history(api, recipient=address, status="failed") == []
    assert history(api, recipient=address, channel="sms") == []
    assert history(api, recipient=address, event="sales.order.created") == []
    got = api.get(f"/api/v1/notifications/{listed[0]['id']}")
    assert got.status_code == 200
    assert got.json() == listed[0]
    assert "content" not in got.json()


def test_an_unknown_notification_is_a_404(api: Api) -> None:
    missing = uuid.uuid4()
    assert api.get(f"/api/v1/notifications/{missing}").status_code == 404
    assert api.post(f"/api/v1/notifications/{missing}/retry").status_code == 404


def test_a_failed_notification_is_retried_at_most_three_times(
    api: Api, receiver: WebhookReceiver
) -> None:
    receiver.failures["/always-down"] = 1000
    failed = api.created(
        "/api/v1/notifications",
        {"channel": "webhook", "recipient": f"{receiver.url}/always-down", "text": "ping"},
    )
    assert failed["status"] == "failed"
    assert failed["last_error"] == "webhook answered 500"
    for retries in (1, 2, 3):
        retried = api.post(f"/api/v1/notifications/{failed['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["retries"] == retries
        assert retried.json()["attempts"] == retries + 1
        assert retried.json()["status"] == "failed"
    refused = api.post(f"/api/v1/notifications/{failed['id']}/retry")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"


def test_a_retry_that_succeeds_sends_and_a_sent_one_cannot_be_retried(
    api: Api, receiver: WebhookReceiver
) -> None:
    receiver.failures["/flaky"] = 1
    failed = api.created(
        "/api/v1/notifications",
        {"channel": "webhook", "recipient": f"{receiver.url}/flaky", "text": "ping"},
    )
    assert failed["status"] == "failed"
    retried = api.post(f"/api/v1/notifications/{failed['id']}/retry").json()
    assert retried["status"] == "sent"
    assert retried["last_error"] is None
    assert api.post(f"/api/v1/notifications/{failed['id']}/retry").status_code == 409


def test_an_adhoc_email_from_a_template(api: Api, sink: SmtpSink) -> None:
    address = unique_email("adhoc-template")
    sent = api.created(
        "/api/v1/notifications",
        {
            "channel": "email",
            "recipient": address,
            "template": "adhoc.message",
            "variables": {"name": "Ana <b>", "message": "{{ 7*7 }}"},
        },
    )
    assert sent["template"] == "adhoc.message"
    [mail] = sink.wait_for(address)
    text, html = parts(mail)
    assert "Hello Ana <b>," in text
    assert "{{ 7*7 }}" in text
    assert "Ana &lt;b&gt;" in html


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"channel": "email", "recipient": "not-an-address", "subject": "s", "text": "t"},
            "recipient",
        ),
        ({"channel": "sms", "recipient": "11987654321", "text": "t"}, "recipient"),
        ({"channel": "email", "recipient": "a@example.com", "text": "t"}, "subject"),
        ({"channel": "email", "recipient": "a@example.com", "template": "no.such"}, "template"),
        (
            {
                "channel": "email",
                "recipient": "a@example.com",
                "template": "adhoc.message",
                "variables": {"name": "x"},
            },
            "variables",
        ),
        (
            {
                "channel": "email",
                "recipient": "a@example.com",
                "subject": "a\r\nBcc: b@example.com",
                "text": "t",
            },
            "subject",
        ),
        ({"channel": "webhook", "recipient": "http://10.0.0.1/hook", "text": "t"}, "recipient"),
    ],
)
def test_an_adhoc_send_that_cannot_be_sent_is_a_422(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = api.post("/api/v1/notifications", json=body)
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}


def test_an_sms_is_sent_through_the_provider(api: Api) -> None:
    sent = api.created(
        "/api/v1/notifications", {"channel": "sms", "recipient": "+5511987654321", "text": "Hi"}
    )
    assert sent["status"] == "sent"
    assert sent["subject"] is None


def test_templates_are_listed_with_their_variables(api: Api) -> None:
    response = api.get("/api/v1/templates")
    assert response.status_code == 200
    listed = {(t["name"], t["channel"]): t for t in response.json()["data"]}
    assert listed[("adhoc.message", "email")] == {
        "name": "adhoc.message",
        "event": None,
        "channel": "email",
        "variables": ["message", "name"],
    }
    assert listed[("auth.user.registered", "email")]["event"] == "auth.user.registered"
    assert "verify_url" in listed[("auth.user.registered", "email")]["variables"]


def test_without_the_send_permission_an_adhoc_send_is_a_403(
    api: Api, auth_server: ServerThread, admin_token: str
) -> None:
    from tests.support.accounts import Members

    seller = Members(auth_server.url, admin_token).new(["sales"], tag="notif-seller")
    body = {"channel": "email", "recipient": "a@example.com", "subject": "s", "text": "t"}
    assert (
        api.post("/api/v1/notifications", json=body, token=seller.access_token).status_code == 403
    )
    assert api.get("/api/v1/notifications", token=seller.access_token).status_code == 403


def test_the_dev_mailbox_is_not_served_where_smtp_is_configured(api: Api) -> None:
    assert api.get("/dev/mailbox", token=None).status_code == 404
    assert api.get("/dev/mailbox/messages", token=None).status_code == 404


async def test_a_refused_webhook_target_dead_letters_at_once_and_the_email_still_goes(
    channel: aio_pika.abc.AbstractChannel, sink: SmtpSink, api: Api
) -> None:
    address = unique_email("refused-target")
    envelope = fresh("logistics.shipment.delivered", customer_email=address)
    await publish(channel, envelope)
    dead = await take_dead_letter(channel, "notification.dlq", envelope["event_id"])
    assert dead.header("x-erp-error") == "DeadLetter"
    assert dead.header("x-erp-attempts") == 1  # no retry can make the address public
    assert "must resolve only to public addresses (one is private)" in dead.header(
        "x-erp-error-reason"
    )
    assert len(sink.wait_for(address)) == 1
    [webhook] = [
        n for n in history(api, channel="webhook") if n["event_id"] == envelope["event_id"]
    ]
    assert webhook["status"] == "failed"
    assert webhook["recipient"] == "http://10.255.255.1/hook"


async def test_an_event_failing_every_attempt_is_dead_lettered_then_retried_by_hand(
    channel: aio_pika.abc.AbstractChannel, sink: SmtpSink, receiver: WebhookReceiver, api: Api
) -> None:
    address = unique_email("exhausted")
    receiver.failures["/dispatched"] = 4  # the first attempt and the kit's three retries
    envelope = fresh("logistics.shipment.dispatched", customer_email=address)
    await publish(channel, envelope)
    dead = await take_dead_letter(channel, "notification.dlq", envelope["event_id"])
    assert dead.header("x-erp-error") == "NotificationFailedError"
    assert dead.header("x-erp-attempts") == 4
    assert dead.header("x-erp-error-reason") == "webhook answered 500"
    [webhook] = [
        n for n in history(api, channel="webhook") if n["event_id"] == envelope["event_id"]
    ]
    assert (webhook["status"], webhook["attempts"], webhook["retries"]) == ("failed", 4, 0)
    retried = api.post(f"/api/v1/notifications/{webhook['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("sent", 5)
    assert len(of_event(receiver, envelope["event_id"])) == 5
    assert len(sink.to(address)) == 1  # the e-mail went on the first attempt, and only then

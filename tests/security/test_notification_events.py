"""Forged and hostile events on notification.queue (API10 Unsafe consumption of APIs): a
message claiming the wrong producer, breaking its schema (a header smuggled into an address)
or naming another event than its routing key is dead-lettered at once with the reason and
e-mails nobody; a well-formed event whose values look like template code or HTML is e-mailed
with them printed literally and escaped."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.support.events import envelope
from tests.support.http import Api, new_ip, unique_email
from tests.support.processes import ServiceProcess
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

DLQ = "notification.dlq"
DOCUMENT = json.loads(
    (Path(__file__).parents[2] / "generated" / "specs" / "erp.asyncapi.json").read_text()
)


def payload_of(event: str, **changes: Any) -> dict[str, Any]:
    for message in DOCUMENT["components"]["messages"].values():
        if message["name"] == event:
            payload: dict[str, Any] = deepcopy(message["examples"][0]["payload"]["payload"])
            return {**payload, **changes}
    raise AssertionError(event)


@pytest.fixture(scope="module")
def mailbox(notification_app: ServiceProcess) -> Iterator[Api]:
    with Api(notification_app.url, ip=new_ip()) as api:
        yield api


def kept_for(mailbox: Api, address: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = mailbox.get("/dev/mailbox/messages").json()["data"]
    return [mail for mail in data if mail["to"] == address]


def wait_kept(mailbox: Api, address: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while not (found := kept_for(mailbox, address)):
        assert time.monotonic() < deadline, f"no e-mail to {address}"
        time.sleep(0.05)
    return found[0]


async def send(
    channel: aio_pika.abc.AbstractChannel, exchange: str, key: str, body: dict[str, Any]
) -> None:
    await publish_body(
        channel, exchange, key, json.dumps(body).encode(), message_id=body["event_id"]
    )


@pytest.mark.parametrize(
    ("routing_key", "body", "reason"),
    [
        (
            "sales.order.confirmed",
            lambda address: envelope(
                "sales.order.confirmed",
                payload_of("sales.order.confirmed", customer_email=address),
                service="inventory",
            ),
            "producer:",
        ),
        (
            "sales.order.confirmed",
            lambda address: envelope(
                "sales.order.confirmed",
                payload_of(
                    "sales.order.confirmed", customer_email=f"{address}\r\nBcc: all@example.com"
                ),
            ),
            "schema:",
        ),
        (
            "sales.order.cancelled",
            lambda address: envelope(
                "sales.order.confirmed", payload_of("sales.order.confirmed", customer_email=address)
            ),
            "routing key:",
        ),
    ],
    ids=["forged-producer", "header-in-address", "name-not-routing-key"],
)
async def test_a_forged_event_is_dead_lettered_and_emails_nobody(
    amqp_channel: aio_pika.abc.AbstractChannel,
    mailbox: Api,
    routing_key: str,
    body: Any,
    reason: str,
) -> None:
    address = unique_email("forged")
    forged = body(address)
    await send(amqp_channel, "sales.events", routing_key, forged)
    dead = await take_dead_letter(amqp_channel, DLQ, forged["event_id"])
    assert dead.header("x-erp-error-reason").startswith(reason)
    assert dead.header("x-erp-attempts") == 0
    # A well-formed event after it is e-mailed: the forged one would have been by now.
    control = unique_email("control")
    good = envelope(
        "sales.order.confirmed", payload_of("sales.order.confirmed", customer_email=control)
    )
    await send(amqp_channel, "sales.events", "sales.order.confirmed", good)
    wait_kept(mailbox, control)
    assert kept_for(mailbox, address) == []


async def test_hostile_values_in_an_event_are_printed_literally_and_escaped(
    amqp_channel: aio_pika.abc.AbstractChannel, mailbox: Api
) -> None:
    address = unique_email("hostile")
    name = "{{ 7*7 }}{{ ''.__class__ }}<script>alert(1)</script>"
    event = envelope(
        "auth.user.registered",
        payload_of("auth.user.registered", email=address, name=name, user_id=str(uuid.uuid4())),
    )
    await send(amqp_channel, "auth.events", "auth.user.registered", event)
    mail = wait_kept(mailbox, address)
    assert "{{ 7*7 }}" in mail["subject"]
    assert "{{ 7*7 }}{{ ''.__class__ }}<script>alert(1)</script>" in mail["text"]
    assert "<script>" not in mail["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mail["html"]

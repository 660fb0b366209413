"""notification.queue on the real RabbitMQ, in a vhost of this module's own: messages carry
the priority their publish operation declares (the kit's publisher sets it from the spec), so
with the consumer stopped the broker hands a backlog out urgent first; a message whose TTL runs out
leaves the queue for the dead-letter queue."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

from generated.events.publishers import EVENTS
from generated.topology import TOPOLOGY
from services.notification.service import definition
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import MessageBus, create_bus
from services.platform.runtime.runner import run_service
from tests.support.http import unique_email
from tests.support.mailsink import SmtpSink, smtp_sink
from tests.support.processes import own_vhost
from tests.support.servers import AMQP_SERVER, RUN_ID

pytestmark = pytest.mark.integration

QUEUE = "notification.queue"
DOCUMENT = json.loads(
    (Path(__file__).parents[2] / "generated" / "specs" / "erp.asyncapi.json").read_text()
)
URGENT = "auth.user.password_reset_requested"  # priority 9 in the spec
ROUTINE = "sales.order.completed"  # priority 5


def envelope(event: str, address: str) -> dict[str, Any]:
    for message in DOCUMENT["components"]["messages"].values():
        if message["name"] == event:
            found: dict[str, Any] = deepcopy(message["examples"][0]["payload"])
            found["event_id"] = str(uuid.uuid4())
            found["payload"]["email" if event.startswith("auth.") else "customer_email"] = address
            return found
    raise AssertionError(event)


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as running:
        yield running


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]], sink: SmtpSink) -> Iterator[Settings]:
    with own_vhost(f"erptest-{RUN_ID}-notification-queue") as vhost:
        env = {**scoped_env("notification_queue"), "ERP_AMQP_URL": f"{AMQP_SERVER}/{vhost}"}
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("ERP_NOTIFICATION_SMTP_HOST", sink.host)
            monkeypatch.setenv("ERP_NOTIFICATION_SMTP_PORT", str(sink.port))
            monkeypatch.setenv("ERP_NOTIFICATION_SMTP_STARTTLS", "0")
            yield load_settings("notification", 8006, env)


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[MessageBus]:
    """A producer's connection (it declares the topology); no consumer runs."""
    running = create_bus(settings, TOPOLOGY)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def publish(bus: MessageBus, body: dict[str, Any], **options: Any) -> None:
    """As the kit's relay publishes: with the priority and TTL the spec gives the event
    (`options` may stand in for them)."""
    spec = EVENTS[body["event_name"]]
    await bus.publish(
        spec.exchange,
        spec.routing_key,
        json.dumps(body).encode(),
        message_id=body["event_id"],
        **{"priority": spec.priority, "expiration_ms": spec.ttl_ms, **options},
    )


async def test_a_message_whose_ttl_runs_out_is_dead_lettered(bus: MessageBus) -> None:
    expiring = envelope(ROUTINE, unique_email("expired"))
    await publish(bus, expiring, expiration_ms=50)
    deadline = time.monotonic() + 15
    while await bus.depth("notification.dlq") == 0:
        assert time.monotonic() < deadline, "the expired message was never dead-lettered"
        await asyncio.sleep(0.1)
    assert await bus.depth(QUEUE) == 0
    dead = await bus.get("notification.dlq")
    assert dead is not None
    assert dead.message_id == expiring["event_id"]
    [death] = dead.headers["x-death"]
    assert death["reason"] == "expired"
    await dead.ack()


async def test_a_backlog_is_worked_off_by_priority(
    bus: MessageBus, settings: Settings, sink: SmtpSink
) -> None:
    urgent_priority, routine_priority = EVENTS[URGENT].priority, EVENTS[ROUTINE].priority
    assert urgent_priority is not None
    assert routine_priority is not None
    assert urgent_priority > routine_priority
    routine = [unique_email("routine") for _ in range(3)]
    urgent = [unique_email("urgent") for _ in range(3)]
    for address in routine:
        await publish(bus, envelope(ROUTINE, address))
    for address in urgent:
        await publish(bus, envelope(URGENT, address))
    assert await bus.depth(QUEUE) == 6
    # The broker hands the backlog out urgent first (what a starting consumer is given):
    # taken one by one and put back, so that the consumer then gets them all.
    taken = []
    for _ in range(6):
        message = await bus.get(QUEUE)
        assert message is not None
        taken.append(message)
    assert [m.routing_key for m in taken] == [URGENT] * 3 + [ROUTINE] * 3
    for message in taken:
        await message.requeue()
    async with run_service(definition, settings):
        deadline = time.monotonic() + 30
        while len(sink.keeper.messages) < 6:
            assert time.monotonic() < deadline, "the backlog was not worked off"
            await asyncio.sleep(0.05)
    assert {message["To"] for message in sink.keeper.messages} == {*urgent, *routine}

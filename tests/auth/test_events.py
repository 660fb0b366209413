"""Auth events on the real RabbitMQ: what goes on the wire, and the outbox under a broker outage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping

import aio_pika
import httpx
import pytest

from tests.support.events import assert_conforms
from tests.support.http import Api, new_ip
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess, broker_stopped

pytestmark = pytest.mark.integration


@pytest.fixture
async def captured(
    auth_service: ServiceProcess, module_env: Mapping[str, str]
) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A durable queue of our own bound to every auth user event (survives a broker restart)."""
    connection = await aio_pika.connect_robust(module_env["ERP_AMQP_URL"])
    channel = await connection.channel()
    exchange = await channel.get_exchange("auth.events")
    queue = await channel.declare_queue(f"test.capture.{uuid.uuid4().hex}", durable=True)
    await queue.bind(exchange, routing_key="auth.user.#")
    try:
        yield queue
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()


async def _next_message(
    queue: aio_pika.abc.AbstractQueue, event_name: str, within: float = 30
) -> aio_pika.abc.AbstractIncomingMessage:
    async def taken() -> aio_pika.abc.AbstractIncomingMessage | None:
        try:
            message = await queue.get(no_ack=True, fail=False, timeout=5)
        except (
            TimeoutError,
            ConnectionError,
            aio_pika.exceptions.AMQPError,
            aio_pika.exceptions.ChannelInvalidStateError,
        ):
            return None  # the broker is coming back; the robust connection reconnects
        return message if message is not None and message.routing_key == event_name else None

    return await eventually(taken, within=within, every=0.2, what=f"{event_name} in {queue.name}")


def _register(service: ServiceProcess, email: str) -> httpx.Response:
    body = {"name": "Event Tester", "email": email, "password": "Event-tester-1"}
    with Api(service.url, ip=new_ip()) as auth:
        return auth.post("/api/v1/auth/register", json=body)


async def test_registered_event_on_the_wire_conforms_to_asyncapi(
    auth_service: ServiceProcess, captured: aio_pika.abc.AbstractQueue
) -> None:
    email = f"wire-{uuid.uuid4().hex[:8]}@example.com"
    response = await asyncio.to_thread(_register, auth_service, email)
    assert response.status_code == 201, response.text

    message = await _next_message(captured, "auth.user.registered")

    envelope = assert_conforms(message.body)
    assert envelope["payload"]["email"] == email
    assert envelope["payload"]["user_id"] == response.json()["user"]["id"]
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.message_id == envelope["event_id"]
    assert envelope["correlation_id"] == response.headers["X-Correlation-ID"]


async def test_event_committed_while_rabbitmq_is_down_arrives_after_it_returns(
    auth_service: ServiceProcess, captured: aio_pika.abc.AbstractQueue
) -> None:
    email = f"outage-{uuid.uuid4().hex[:8]}@example.com"
    async with broker_stopped():
        response = await asyncio.to_thread(_register, auth_service, email)
        assert response.status_code == 201, response.text  # committed with its outbox row

    message = await _next_message(captured, "auth.user.registered", within=60)

    assert assert_conforms(message.body)["payload"]["email"] == email

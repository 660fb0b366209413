"""Dead letters: what `erp dlq list|show|replay <service>` does.

Messages are read with basic.get and held unacknowledged while inspected, then requeued, so
listing never loses or reorders a dead letter. Replay publishes a message to the exchange and
routing key it originally came from (with a confirm) and only then removes it from the DLQ.
In embedded mode the same functions read the in-process broker's dead-letter queues, which
exist only inside the process running the services.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from services.platform.core.contracts import Topology
from services.platform.core.settings import Settings
from services.platform.messaging.bus import IncomingMessage, MessageBus, create_bus

log = logging.getLogger(__name__)

ALL: Final = "all"
DEFAULT_LIMIT = 50

_FAILURE_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-erp-")


@dataclass(frozen=True)
class DeadLetterMessage:
    """A dead letter as an operator reads it."""

    queue: str
    message_id: str | None
    event_name: str | None
    error: str | None  # exception class, or the broker's reason (rejected, delivery_limit, ...)
    reason: str | None
    failed_at: str | None
    attempts: int | None
    original_exchange: str | None
    original_routing_key: str | None
    headers: Mapping[str, Any]
    body: bytes

    @classmethod
    def from_message(cls, message: IncomingMessage) -> DeadLetterMessage:
        headers = message.headers
        exchange = _text(headers.get("x-erp-original-exchange"))
        routing_key = _text(headers.get("x-erp-original-routing-key"))
        error = _text(headers.get("x-erp-error"))
        reason = _text(headers.get("x-erp-error-reason"))
        failed_at = _text(headers.get("x-erp-failed-at"))
        attempts = headers.get("x-erp-attempts")
        deaths = headers.get("x-death")
        if exchange is None and isinstance(deaths, list) and deaths:
            # Dead-lettered by RabbitMQ itself (delivery limit, TTL, reject): x-death says where
            # the message was first published.
            death = deaths[-1]
            exchange = _text(death.get("exchange"))
            keys = death.get("routing-keys") or []
            routing_key = _text(keys[0]) if keys else None
            error = error or _text(death.get("reason"))
            failed_at = failed_at or _text(death.get("time"))
            attempts = attempts if attempts is not None else death.get("count")
        return cls(
            queue=message.queue,
            message_id=message.message_id,
            event_name=_event_name(message.body) or routing_key,
            error=error,
            reason=reason,
            failed_at=failed_at,
            attempts=int(attempts) if isinstance(attempts, int | str) else None,
            original_exchange=exchange,
            original_routing_key=routing_key,
            headers=dict(headers),
            body=message.body,
        )

    def summary(self) -> dict[str, Any]:
        """One line of `erp dlq list`."""
        return {
            "message_id": self.message_id,
            "event_name": self.event_name,
            "error": self.error,
            "reason": self.reason,
            "failed_at": self.failed_at,
            "attempts": self.attempts,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (`erp dlq show`); the body as JSON when it is JSON."""
        try:
            body: Any = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = self.body.decode("utf-8", errors="replace")
        return {
            **self.summary(),
            "queue": self.queue,
            "original_exchange": self.original_exchange,
            "original_routing_key": self.original_routing_key,
            "headers": json.loads(json.dumps(self.headers, default=str)),
            "body": body,
        }


def dead_letter_queues(service: str, topology: Topology) -> list[str]:
    """The DLQ names of a service's queues; LookupError when it consumes nothing."""
    names = list(dict.fromkeys(queue.dead_letter_queue for queue in topology.queues_for(service)))
    if not names:
        raise LookupError(f"{service} consumes no events, so it has no dead-letter queue")
    return names


# ---------------------------------------------------------------- on an open bus


async def peek(bus: MessageBus, queue: str, limit: int = DEFAULT_LIMIT) -> list[DeadLetterMessage]:
    """Up to `limit` dead letters of `queue`, oldest first, all left in place."""
    held: list[IncomingMessage] = []
    try:
        while len(held) < limit and (message := await bus.get(queue)) is not None:
            held.append(message)
        return [DeadLetterMessage.from_message(message) for message in held]
    finally:
        await _requeue(held)


async def find(bus: MessageBus, queue: str, message_id: str) -> DeadLetterMessage | None:
    held: list[IncomingMessage] = []
    try:
        while (message := await bus.get(queue)) is not None:
            held.append(message)
            if message.message_id == message_id:
                return DeadLetterMessage.from_message(message)
        return None
    finally:
        await _requeue(held)


async def replay_from(bus: MessageBus, queue: str, message_id: str) -> int:
    """Republish `message_id` (or every message, with ALL) to where it came from; return how
    many were replayed. Each is removed from the DLQ only after the broker confirmed it."""
    held: list[IncomingMessage] = []
    replayed: set[str] = set()
    count = 0
    try:
        while (message := await bus.get(queue)) is not None:
            held.append(message)
            if message.message_id is not None and message.message_id in replayed:
                break  # replayed, failed again and dead-lettered again: not in a loop
            if message_id not in (ALL, message.message_id):
                continue
            letter = DeadLetterMessage.from_message(message)
            if letter.original_exchange is None or letter.original_routing_key is None:
                log.warning("%s: dead letter %s names no origin; kept", queue, message.message_id)
                continue
            await bus.publish(
                letter.original_exchange,
                letter.original_routing_key,
                message.body,
                message_id=message.message_id,
                headers=_replay_headers(message.headers),
                persistent=True,
                correlation_id=message.correlation_id,
            )
            held.remove(message)
            await message.ack()
            count += 1
            if message.message_id is not None:
                replayed.add(message.message_id)
            if message_id != ALL:
                break
        return count
    finally:
        await _requeue(held)


# ---------------------------------------------------------------- for the CLI


async def list_dead_letters(
    settings: Settings, topology: Topology, service: str, limit: int = DEFAULT_LIMIT
) -> list[DeadLetterMessage]:
    async with _bus(settings, topology) as bus:
        letters: list[DeadLetterMessage] = []
        for queue in dead_letter_queues(service, topology):
            letters += await peek(bus, queue, limit - len(letters))
        return letters


async def show(
    settings: Settings, topology: Topology, service: str, message_id: str
) -> DeadLetterMessage | None:
    async with _bus(settings, topology) as bus:
        for queue in dead_letter_queues(service, topology):
            if (letter := await find(bus, queue, message_id)) is not None:
                return letter
        return None


async def replay(settings: Settings, topology: Topology, service: str, message_id: str) -> int:
    """Replay one dead letter by message id, or every one with `message_id="all"`."""
    async with _bus(settings, topology) as bus:
        replayed = 0
        for queue in dead_letter_queues(service, topology):
            replayed += await replay_from(bus, queue, message_id)
            if replayed and message_id != ALL:
                break
        return replayed


@asynccontextmanager
async def _bus(settings: Settings, topology: Topology) -> AsyncIterator[MessageBus]:
    bus = create_bus(settings, topology)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


async def _requeue(messages: list[IncomingMessage]) -> None:
    for message in messages:
        await message.requeue()


def _replay_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    replays = headers.get("x-erp-replays")
    kept = {key: value for key, value in headers.items() if not key.startswith(_FAILURE_HEADERS)}
    kept["x-erp-replays"] = (replays if isinstance(replays, int) else 0) + 1
    kept["x-erp-replayed-at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return kept


def _event_name(body: bytes) -> str | None:
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    name = envelope.get("event_name") if isinstance(envelope, dict) else None
    return name if isinstance(name, str) else None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)

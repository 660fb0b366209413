"""Inventory's events on the real RabbitMQ, against `erp serve auth` and `erp serve inventory`.

Sales does not exist yet, so the tests play its part: they publish `sales.order.*` envelopes
(checked against the AsyncAPI document first) to `sales.events`, the way the sales relay will,
and read what inventory answers on `inventory.events` through a queue of their own. Stock is
set up over HTTP with an admin's bearer token. Every test uses its own products and orders, so
the tests share one pair of processes (and one `inventory.dlq`) without seeing each other.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
import psycopg
import pytest
from psycopg import sql

from tests.support.catalog import Product, product_with_stock
from tests.support.events import assert_conforms
from tests.support.orders import order_confirmed, order_created
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess, erp
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

# Long enough to tell "dead-lettered at once" from "dead-lettered after the retries".
RETRY_DELAYS = (1.0, 1.5, 2.0)
SALES_EXCHANGE = "sales.events"
INVENTORY_EXCHANGE = "inventory.events"
INVENTORY_DLQ = "inventory.dlq"
POLL = 0.1


# ---------------------------------------------------------------- processes and HTTP


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return {
        **scoped_env("inventory_events"),
        "ERP_RETRY_DELAYS": ",".join(str(delay) for delay in RETRY_DELAYS),
    }


@pytest.fixture(scope="module")
def auth_url(auth_service: ServiceProcess) -> str:
    return auth_service.url


@pytest.fixture
async def api(
    inventory_service: ServiceProcess, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The inventory API as a super-admin."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(
        base_url=inventory_service.url, headers=headers, timeout=15
    ) as client:
        yield client


async def _stock(api: httpx.AsyncClient, product: Product) -> dict[str, Any]:
    response = await api.get(f"/api/v1/products/{product.id}/stock")
    assert response.status_code == 200, response.text
    stock: dict[str, Any] = response.json()
    return stock


async def _reservation(api: httpx.AsyncClient, order_id: str) -> dict[str, Any] | None:
    response = await api.get(f"/api/v1/stock/reservations/{order_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    reservation: dict[str, Any] = response.json()
    return reservation


# ---------------------------------------------------------------- sales' side of the wire


def _body(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


@pytest.fixture
async def channel(
    inventory_service: ServiceProcess, module_env: Mapping[str, str]
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect_robust(module_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish(
    channel: aio_pika.abc.AbstractChannel, envelope: dict[str, Any], *, validate: bool = True
) -> None:
    """Publish like a producer of the platform, to the domain exchange with the event name as
    routing key."""
    body = _body(envelope)
    if validate:
        assert_conforms(body)
    await publish_body(
        channel,
        SALES_EXCHANGE,
        envelope["event_name"],
        body,
        message_id=envelope["event_id"],
        correlation_id=envelope["correlation_id"],
    )


# ---------------------------------------------------------------- inventory's side


@dataclass(frozen=True)
class Seen:
    """One message taken off the wire, with its envelope (already checked against the spec)."""

    message: aio_pika.abc.AbstractIncomingMessage
    envelope: dict[str, Any]

    @property
    def order_id(self) -> Any:
        return self.envelope["payload"].get("order_id")


@dataclass
class Capture:
    """Everything inventory publishes under `inventory.stock.#`, from the moment of binding."""

    queue: aio_pika.abc.AbstractQueue
    seen: list[Seen] = field(default_factory=list)

    async def drain(self) -> None:
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            self.seen.append(Seen(message, assert_conforms(message.body)))

    def events(self, event_name: str, order_id: str | None = None) -> list[Seen]:
        return [
            seen
            for seen in self.seen
            if seen.envelope["event_name"] == event_name
            and (order_id is None or seen.order_id == order_id)
        ]

    async def wait(
        self, event_name: str, order_id: str, within: float = 30, count: int = 1
    ) -> list[Seen]:
        async def arrived() -> list[Seen] | None:
            await self.drain()
            found = self.events(event_name, order_id)
            return found if len(found) >= count else None

        found: list[Seen] = await eventually(
            arrived, what=f"{count} x {event_name} for order {order_id}", within=within, every=POLL
        )
        return found

    async def settle(self, quiet: float = 2.0) -> None:
        """Keep reading for `quiet` seconds: a duplicate publication would show up by then
        (the relay publishes within a fraction of a second of the commit)."""
        deadline = time.monotonic() + quiet
        while time.monotonic() < deadline:
            await self.drain()
            await asyncio.sleep(POLL)
        await self.drain()


@pytest.fixture
async def captured(
    channel: aio_pika.abc.AbstractChannel,
) -> AsyncIterator[Capture]:
    exchange = await channel.get_exchange(INVENTORY_EXCHANGE)
    queue = await channel.declare_queue(f"test.capture.{uuid.uuid4().hex}", exclusive=True)
    await queue.bind(exchange, routing_key="inventory.stock.#")
    try:
        yield Capture(queue)
    finally:
        await queue.delete(if_unused=False, if_empty=False)


def _assert_caused_by(seen: Seen, cause: dict[str, Any]) -> None:
    """On the wire as the platform publishes, in the conversation of the order event."""
    envelope = seen.envelope
    assert seen.message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert seen.message.content_type == "application/json"
    assert seen.message.message_id == envelope["event_id"]
    assert seen.message.routing_key == envelope["event_name"]
    assert envelope["correlation_id"] == cause["correlation_id"]
    assert envelope["causation_id"] == cause["event_id"]
    assert envelope["metadata"]["service"] == "inventory"


# ---------------------------------------------------------------- 1. reserve or refuse


async def test_order_created_reserves_stock_and_says_so_once(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    product = await product_with_stock(api, quantity=10, tag="EVT")
    created = order_created([(product, 3)])
    order_id = created["payload"]["order_id"]

    await publish(channel, created)

    [reserved] = await captured.wait("inventory.stock.reserved", order_id)
    _assert_caused_by(reserved, created)
    payload = reserved.envelope["payload"]
    assert payload["items"] == [
        {
            "product_id": product.id,
            "warehouse_id": payload["items"][0]["warehouse_id"],
            "quantity": 3,
        }
    ]
    reservation = await _reservation(api, order_id)
    assert reservation is not None
    assert reservation["id"] == payload["reservation_id"]
    assert reservation["status"] == "pending"
    stock = await _stock(api, product)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (10, 3, 7)

    await captured.settle()
    assert len(captured.events("inventory.stock.reserved", order_id)) == 1
    assert captured.events("inventory.stock.reservation_failed", order_id) == []


async def test_order_for_more_than_available_fails_with_per_item_quantities(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    short = await product_with_stock(api, quantity=3, tag="EVT")
    plenty = await product_with_stock(api, quantity=50, tag="EVT")
    created = order_created([(short, 5), (plenty, 2)])
    order_id = created["payload"]["order_id"]

    await publish(channel, created)

    [failed] = await captured.wait("inventory.stock.reservation_failed", order_id)
    _assert_caused_by(failed, created)
    items = {item["product_id"]: item for item in failed.envelope["payload"]["items"]}
    assert items[short.id]["requested"] == 5
    assert items[short.id]["available"] == 3
    if plenty.id in items:  # listing the items that were available is optional
        assert (items[plenty.id]["requested"], items[plenty.id]["available"]) == (2, 50)
    # All or nothing: nothing was reserved, not even the item in stock.
    assert (await _stock(api, short))["reserved"] == 0
    assert (await _stock(api, plenty))["reserved"] == 0

    await captured.settle()
    assert len(captured.events("inventory.stock.reservation_failed", order_id)) == 1
    assert captured.events("inventory.stock.reserved", order_id) == []


# ---------------------------------------------------------------- 2. at-least-once delivery


async def test_the_same_order_event_delivered_twice_reserves_once(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    product = await product_with_stock(api, quantity=20, tag="EVT")
    created = order_created([(product, 4)])
    order_id = created["payload"]["order_id"]

    await publish(channel, created)
    await publish(channel, created)  # the same event_id: a redelivery

    await captured.wait("inventory.stock.reserved", order_id)
    await captured.settle()
    assert len(captured.events("inventory.stock.reserved", order_id)) == 1
    stock = await _stock(api, product)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (20, 4, 16)


# ---------------------------------------------------------------- 3. dead letters


async def test_a_payload_that_breaks_its_schema_is_dead_lettered_at_once(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    product = await product_with_stock(api, quantity=5, tag="EVT")
    broken = order_created([(product, 1)])
    broken["payload"]["items"][0]["quantity"] = 0  # quantity ≥ 1
    with pytest.raises(AssertionError, match="quantity"):
        assert_conforms(_body(broken))

    await publish(channel, broken, validate=False)

    letter = await take_dead_letter(
        channel, INVENTORY_DLQ, broken["event_id"], within=sum(RETRY_DELAYS) * 3
    )
    # Well before the first retry would have run: no attempt at all.
    assert letter.arrived_after < RETRY_DELAYS[0] + RETRY_DELAYS[1], letter.arrived_after
    assert letter.header("x-erp-attempts") == 0
    assert letter.header("x-erp-error") == "InvalidMessage"
    assert "quantity" in letter.header("x-erp-error-reason")
    assert letter.header("x-erp-original-exchange") == SALES_EXCHANGE
    assert letter.header("x-erp-original-routing-key") == "sales.order.created"
    assert json.loads(letter.body) == broken  # the original body, untouched
    assert (await _stock(api, product))["reserved"] == 0
    assert await _reservation(api, broken["payload"]["order_id"]) is None


async def test_confirmed_for_an_unknown_order_is_dead_lettered_with_its_reason(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel
) -> None:
    product = await product_with_stock(api, quantity=5, tag="EVT")
    confirmed = order_confirmed(order_created([(product, 2)]))  # never reserved

    await publish(channel, confirmed)

    letter = await take_dead_letter(
        channel, INVENTORY_DLQ, confirmed["event_id"], within=sum(RETRY_DELAYS) * 3
    )
    assert letter.header("x-erp-error") == "DeadLetter"
    assert letter.header("x-erp-attempts") == 1  # refused, not retried
    assert confirmed["payload"]["order_id"] in letter.header("x-erp-error-reason")
    assert letter.header("x-erp-original-routing-key") == "sales.order.confirmed"
    assert letter.arrived_after < RETRY_DELAYS[0] + RETRY_DELAYS[1], letter.arrived_after
    stock = await _stock(api, product)
    assert (stock["on_hand"], stock["reserved"]) == (5, 0)


def _database_url(env: Mapping[str, str]) -> str:
    return env["ERP_INVENTORY_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(
    api: httpx.AsyncClient,
    channel: aio_pika.abc.AbstractChannel,
    captured: Capture,
    module_env: Mapping[str, str],
) -> None:
    """A real failure, and only for this one order: a trigger in inventory's database refuses
    the order's reservation row, so every attempt of the handler fails in PostgreSQL (after the
    kit has written the inbox row in the same transaction, which rolls back with it). No hook
    in the service, and nothing else it does is disturbed."""
    product = await product_with_stock(api, quantity=5, tag="EVT")
    created = order_created([(product, 1)])
    order_id = created["payload"]["order_id"]
    name = f"test_refuse_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(
        _database_url(module_env), autocommit=True
    ) as database:
        await database.execute(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'writes for order % are refused', NEW.order_id; END $$"
            ).format(sql.Identifier(name))
        )
        try:
            await database.execute(
                sql.SQL(
                    "CREATE TRIGGER {} BEFORE INSERT ON reservations FOR EACH ROW "
                    "WHEN (NEW.order_id::text = {}) EXECUTE FUNCTION {}()"
                ).format(sql.Identifier(name), sql.Literal(order_id), sql.Identifier(name))
            )
            await publish(channel, created)

            letter = await take_dead_letter(channel, INVENTORY_DLQ, created["event_id"], within=60)
        finally:
            await database.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON reservations").format(sql.Identifier(name))
            )
            await database.execute(
                sql.SQL("DROP FUNCTION IF EXISTS {}()").format(sql.Identifier(name))
            )

    assert letter.header("x-erp-attempts") == len(RETRY_DELAYS) + 1
    assert letter.arrived_after >= sum(RETRY_DELAYS), letter.arrived_after  # backed off
    # The SQLSTATE, not the database's text (which carries the statement and its values).
    assert letter.header("x-erp-error-reason") == (
        "database: plpgsql_error (SQLSTATE P0001 raise_exception)"
    )
    assert letter.header("x-erp-original-exchange") == SALES_EXCHANGE
    assert letter.header("x-erp-original-routing-key") == "sales.order.created"
    assert await _reservation(api, order_id) is None
    assert (await _stock(api, product))["reserved"] == 0
    await captured.drain()
    assert captured.events("inventory.stock.reserved", order_id) == []

    # The failed attempts left nothing behind, not even the inbox row: the same event, delivered
    # again now that the cause is gone, is handled (not taken for a duplicate).
    await publish(channel, created)
    await captured.wait("inventory.stock.reserved", order_id)
    assert (await _stock(api, product))["reserved"] == 1


# ---------------------------------------------------------------- 4. SIGKILL mid-stream


async def test_orders_are_reserved_exactly_once_across_a_sigkill(
    api: httpx.AsyncClient,
    channel: aio_pika.abc.AbstractChannel,
    captured: Capture,
    inventory_service: ServiceProcess,
) -> None:
    orders = 40
    product = await product_with_stock(api, quantity=orders + 10, tag="EVT")
    events = [order_created([(product, 1)]) for _ in range(orders)]
    order_ids = [event["payload"]["order_id"] for event in events]

    async def publish_paced() -> None:  # a steady stream, so the kill lands part-way
        for event in events:
            await publish(channel, event)
            await asyncio.sleep(0.05)

    async def reserved_orders() -> set[str]:
        await captured.drain()
        reserved = captured.events("inventory.stock.reserved")
        return {seen.order_id for seen in reserved} & set(order_ids)

    async def a_few_reserved() -> bool:
        return len(await reserved_orders()) >= 5

    publishing = asyncio.create_task(publish_paced())
    try:
        await eventually(a_few_reserved, what="the first reservations", within=30)
        await asyncio.to_thread(inventory_service.stop, signal.SIGKILL)
        reserved_before_kill = await reserved_orders()
        await publishing
    finally:
        if not publishing.done():
            publishing.cancel()
        await asyncio.to_thread(inventory_service.start)
    assert len(reserved_before_kill) < orders, "the kill came after everything was done"

    async def all_reserved() -> bool:
        await captured.drain()
        return all(captured.events("inventory.stock.reserved", order) for order in order_ids)

    await eventually(
        all_reserved, what=f"{orders} reservations after the restart", within=90, every=POLL
    )
    await captured.settle()

    reservation_ids: dict[str, set[str]] = defaultdict(set)
    for seen in captured.events("inventory.stock.reserved"):
        if seen.order_id in order_ids:
            reservation_ids[seen.order_id].add(seen.envelope["payload"]["reservation_id"])
    twice = {order: ids for order, ids in reservation_ids.items() if len(ids) > 1}
    assert not twice, f"orders reserved more than once: {twice}"
    for order_id in order_ids:
        reservation = await _reservation(api, order_id)
        assert reservation is not None, order_id
        assert reservation["id"] in reservation_ids[order_id]
        assert [item["quantity"] for item in reservation["items"]] == [1]
    stock = await _stock(api, product)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (orders + 10, orders, 10)
    movements = await api.get(
        "/api/v1/stock/movements",
        params={"product_id": product.id, "type": "reservation", "per_page": 100},
    )
    assert movements.status_code == 200, movements.text
    # One reservation movement per order, none twice.
    references = sorted(movement["reference"] for movement in movements.json()["data"])
    assert references == sorted(order_ids)
    failed = captured.events("inventory.stock.reservation_failed")
    assert not [seen for seen in failed if seen.order_id in order_ids]


# ---------------------------------------------------------------- 5. erp dlq


async def test_erp_dlq_lists_shows_and_replays_a_dead_letter_once_its_cause_is_fixed(
    api: httpx.AsyncClient,
    channel: aio_pika.abc.AbstractChannel,
    captured: Capture,
    module_env: Mapping[str, str],
) -> None:
    product = await product_with_stock(api, quantity=10, tag="EVT")
    created = order_created([(product, 2)])
    confirmed = order_confirmed(created)
    order_id = created["payload"]["order_id"]
    letter_id = confirmed["event_id"]

    # Confirmed before sales ever said "created": inventory refuses it.
    await publish(channel, confirmed)

    def dlq(*args: str) -> str:
        return erp("dlq", *args, env=module_env)

    async def listed() -> dict[str, Any] | None:
        lines = (await asyncio.to_thread(dlq, "list", "inventory")).splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return next((entry for entry in entries if entry["message_id"] == letter_id), None)

    entry = await eventually(
        listed, what=f"{letter_id} in `erp dlq list inventory`", within=30, every=0.5
    )
    assert entry["event_name"] == "sales.order.confirmed"
    assert entry["error"] == "DeadLetter"
    assert order_id in entry["reason"]
    assert entry["attempts"] == 1

    shown = json.loads(await asyncio.to_thread(dlq, "show", "inventory", letter_id))
    assert shown["body"] == confirmed
    assert shown["queue"] == INVENTORY_DLQ
    assert shown["original_exchange"] == SALES_EXCHANGE
    assert shown["original_routing_key"] == "sales.order.confirmed"
    assert shown["headers"]["x-erp-error-reason"] == entry["reason"]
    assert await listed() is not None  # listing and showing took nothing away

    # Fix the cause: the order's reservation now exists.
    await publish(channel, created)
    await captured.wait("inventory.stock.reserved", order_id)
    assert (await _stock(api, product))["reserved"] == 2

    replayed = await asyncio.to_thread(dlq, "replay", "inventory", letter_id)
    assert "replayed 1 message" in replayed

    [confirmation] = await captured.wait("inventory.stock.confirmed", order_id)
    assert confirmation.envelope["causation_id"] == letter_id
    assert confirmation.envelope["correlation_id"] == created["correlation_id"]

    async def stock_left() -> dict[str, Any] | None:
        stock = await _stock(api, product)
        return stock if stock["on_hand"] == 8 else None

    stock = await eventually(
        stock_left, what="confirmed stock leaving the warehouse", within=30, every=POLL
    )
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (8, 0, 8)
    reservation = await _reservation(api, order_id)
    assert reservation is not None
    assert reservation["status"] == "confirmed"
    assert await listed() is None  # gone from the DLQ

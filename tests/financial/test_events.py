"""Financial's payments on the real RabbitMQ, against `erp serve auth` and `erp serve financial`.

Sales does not exist yet, so the tests play its part: they publish `sales.order.created` and
`sales.order.cancelled` envelopes (checked against the AsyncAPI document first) to
`sales.events`, read what financial answers on `financial.events` through a queue of their own
(each message checked against the document), and look at the payment and the ledger over HTTP
with an admin's token. The simulated gateway answers from the cents of the total (ADR 0012).
The order's invoice (ADR 0014) is made over HTTP and cancelled by `sales.order.cancelled`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from sqlalchemy import create_engine, text

from services.financial.service import definition
from services.financial.tables import metadata
from services.platform.core.settings import load_settings
from tests.support.events import assert_conforms
from tests.support.orders import order_cancelled, order_totalling
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess, erp
from tests.support.schema import assert_migrations_match
from tests.support.servers import SERVICE_PORTS
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

RETRY_DELAYS = (0.5, 0.75, 1.0)
SALES_EXCHANGE = "sales.events"
FINANCIAL_EXCHANGE = "financial.events"
FINANCIAL_DLQ = "financial.dlq"
POLL = 0.1


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return {
        **scoped_env("financial_events"),
        "ERP_RETRY_DELAYS": ",".join(str(delay) for delay in RETRY_DELAYS),
    }


@pytest.fixture(scope="module")
def auth_url(auth_service: ServiceProcess) -> str:
    return auth_service.url


@pytest.fixture
async def api(
    financial_service: ServiceProcess, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(
        base_url=financial_service.url, headers=headers, timeout=15
    ) as client:
        yield client


@pytest.fixture
async def channel(
    financial_service: ServiceProcess, module_env: Mapping[str, str]
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect_robust(module_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish(channel: aio_pika.abc.AbstractChannel, envelope: dict[str, Any]) -> None:
    body = json.dumps(envelope).encode()
    assert_conforms(body)
    await publish_body(
        channel,
        SALES_EXCHANGE,
        envelope["event_name"],
        body,
        message_id=envelope["event_id"],
        correlation_id=envelope["correlation_id"],
    )


@dataclass
class Capture:
    """Everything financial publishes under `financial.payment.#` and `financial.invoice.#`,
    from the moment of binding."""

    queue: aio_pika.abc.AbstractQueue
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def drain(self) -> None:
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            envelope = assert_conforms(message.body)
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert message.message_id == envelope["event_id"]
            assert message.routing_key == envelope["event_name"]
            self.seen.append(envelope)

    def events(self, event_name: str, order_id: str) -> list[dict[str, Any]]:
        return [
            envelope
            for envelope in self.seen
            if envelope["event_name"] == event_name and envelope["payload"]["order_id"] == order_id
        ]

    async def wait(self, event_name: str, order_id: str, within: float = 30) -> dict[str, Any]:
        async def arrived() -> dict[str, Any] | None:
            await self.drain()
            found = self.events(event_name, order_id)
            return found[0] if found else None

        envelope: dict[str, Any] = await eventually(
            arrived, what=f"{event_name} for order {order_id}", within=within, every=POLL
        )
        return envelope

    async def settle(self, quiet: float = 2.0) -> None:
        """Keep reading for `quiet` seconds: a duplicate publication would show up by then."""
        deadline = time.monotonic() + quiet
        while time.monotonic() < deadline:
            await self.drain()
            await asyncio.sleep(POLL)


@pytest.fixture
async def captured(channel: aio_pika.abc.AbstractChannel) -> AsyncIterator[Capture]:
    exchange = await channel.get_exchange(FINANCIAL_EXCHANGE)
    queue = await channel.declare_queue(f"test.capture.{uuid.uuid4().hex}", exclusive=True)
    await queue.bind(exchange, routing_key="financial.payment.#")
    await queue.bind(exchange, routing_key="financial.invoice.#")
    try:
        yield Capture(queue)
    finally:
        await queue.delete(if_unused=False, if_empty=False)


async def payment_of(api: httpx.AsyncClient, order_id: str) -> dict[str, Any] | None:
    response = await api.get(f"/api/v1/payments/by-order/{order_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    payment: dict[str, Any] = response.json()
    return payment


async def settled_payment(api: httpx.AsyncClient, order_id: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        payment = await payment_of(api, order_id)
        return payment if payment is not None and payment["status"] == status else None

    payment: dict[str, Any] = await eventually(
        reached, what=f"payment of {order_id} {status}", within=30, every=POLL
    )
    return payment


async def bookings(api: httpx.AsyncClient, payment_id: str) -> list[tuple[str, str, str]]:
    found = []
    page = 1
    while True:
        response = await api.get("/api/v1/transactions", params={"page": page, "per_page": 100})
        assert response.status_code == 200, response.text
        body = response.json()
        found += [
            (row["type"], row["category"], row["amount"])
            for row in body["data"]
            if row["payment_id"] == payment_id
        ]
        if page >= body["meta"]["last_page"]:
            return sorted(found)
        page += 1


def assert_caused_by(envelope: dict[str, Any], cause: dict[str, Any]) -> None:
    assert envelope["correlation_id"] == cause["correlation_id"]
    assert envelope["causation_id"] == cause["event_id"]
    assert envelope["metadata"]["service"] == "financial"


async def test_an_order_is_paid_booked_and_announced(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("724.80")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)

    processed = await captured.wait("financial.payment.processed", order_id)
    assert_caused_by(processed, created)
    payment = await settled_payment(api, order_id, "approved")
    assert processed["payload"]["payment_id"] == payment["id"]
    assert (payment["amount"], payment["currency"], payment["method"]) == ("724.80", "BRL", "pix")
    assert payment["order_number"] == created["payload"]["order_number"]
    assert await bookings(api, payment["id"]) == [("credit", "sales", "724.80")]
    fetched = await api.get(f"/api/v1/payments/{payment['id']}")
    assert fetched.json() == payment


async def statuses_until(api: httpx.AsyncClient, order_id: str, final: str) -> list[str]:
    """The payment's statuses as GET shows them, polled until `final` (each change once)."""
    seen: list[str] = []

    async def reached() -> bool | None:
        payment = await payment_of(api, order_id)
        if payment is not None and (not seen or seen[-1] != payment["status"]):
            seen.append(payment["status"])
        return True if seen and seen[-1] == final else None

    await eventually(reached, what=f"payment of {order_id} {final}", within=30, every=POLL)
    return seen


async def test_a_slow_charge_shows_processing_until_the_gateway_answers(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("140.96")  # the simulator answers after 2 seconds
    order_id = created["payload"]["order_id"]
    await publish(channel, created)

    seen = await statuses_until(api, order_id, "approved")
    assert seen[-2:] == ["processing", "approved"], seen
    processed = await captured.wait("financial.payment.processed", order_id)
    assert_caused_by(processed, created)


async def test_a_cancellation_during_a_slow_charge_refunds_it_once_approved(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("160.96")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await settled_payment(api, order_id, "processing")
    cancelled = order_cancelled(created, "Changed my mind")
    await publish(channel, cancelled)

    refunded = await captured.wait("financial.payment.refunded", order_id)
    assert_caused_by(refunded, cancelled)
    payment = await settled_payment(api, order_id, "refunded")
    assert await bookings(api, payment["id"]) == [
        ("credit", "sales", "160.96"),
        ("debit", "refunds", "160.96"),
    ]
    await captured.settle()
    assert len(captured.events("financial.payment.processed", order_id)) == 1
    assert len(captured.events("financial.payment.refunded", order_id)) == 1
    assert captured.events("financial.payment.failed", order_id) == []


async def test_a_declined_payment_is_announced_as_failed(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("99.51")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)

    failed = await captured.wait("financial.payment.failed", order_id)
    assert failed["payload"]["reason"] == "card_declined"
    payment = await settled_payment(api, order_id, "declined")
    assert payment["failure_reason"] == "card_declined"
    assert await bookings(api, payment["id"]) == []


async def test_the_same_order_delivered_again_and_again_is_charged_once(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("150.00")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await publish(channel, created)  # the same event id: a redelivery (the inbox)
    await publish(channel, {**created, "event_id": str(uuid.uuid4())})  # a new event, same order

    await captured.wait("financial.payment.processed", order_id)
    await captured.settle()
    assert len(captured.events("financial.payment.processed", order_id)) == 1
    payment = await settled_payment(api, order_id, "approved")
    assert await bookings(api, payment["id"]) == [("credit", "sales", "150.00")]


async def test_a_cancellation_after_approval_refunds(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("210.00")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await captured.wait("financial.payment.processed", order_id)

    cancelled = order_cancelled(created, "Out of stock")
    await publish(channel, cancelled)
    await publish(channel, cancelled)

    refunded = await captured.wait("financial.payment.refunded", order_id)
    assert_caused_by(refunded, cancelled)
    assert refunded["payload"]["reason"] == "Out of stock"
    payment = await settled_payment(api, order_id, "refunded")
    assert payment["refunded_at"] is not None
    await captured.settle()
    assert len(captured.events("financial.payment.refunded", order_id)) == 1
    assert await bookings(api, payment["id"]) == [
        ("credit", "sales", "210.00"),
        ("debit", "refunds", "210.00"),
    ]


async def test_a_cancellation_before_the_order_charges_nothing(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("330.00")
    order_id = created["payload"]["order_id"]
    await publish(channel, order_cancelled(created))

    async def tombstone_committed() -> bool | None:
        # The cancellation has no answer on the wire: its effect is what the late order does.
        return True if await payment_of(api, order_id) is None else None

    await eventually(tombstone_committed, what="cancellation handled", within=10, every=POLL)
    await asyncio.sleep(0.5)
    await publish(channel, created)

    payment = await settled_payment(api, order_id, "cancelled")
    assert payment["processed_at"] is None
    assert await bookings(api, payment["id"]) == []
    await captured.settle()
    assert captured.events("financial.payment.processed", order_id) == []
    assert captured.events("financial.payment.failed", order_id) == []


async def test_another_order_under_a_known_id_is_dead_lettered_at_once(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("60.00")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await captured.wait("financial.payment.processed", order_id)

    impostor = order_totalling("6000.00", order_id=order_id)
    await publish(channel, impostor)

    letter = await take_dead_letter(channel, FINANCIAL_DLQ, impostor["event_id"], within=30)
    assert letter.header("x-erp-error") == "DeadLetter"
    assert letter.header("x-erp-attempts") == 1  # refused, not retried
    assert "another amount" in letter.header("x-erp-error-reason")
    assert letter.arrived_after < RETRY_DELAYS[0] + RETRY_DELAYS[1], letter.arrived_after
    payment = await settled_payment(api, order_id, "approved")
    assert payment["amount"] == "60.00"


async def test_the_summary_totals_the_day(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    today = datetime.now(UTC).date().isoformat()
    before = await api.get("/api/v1/transactions/summary", params={"from": today, "to": today})
    assert before.status_code == 200, before.text
    created = order_totalling("31.00")
    await publish(channel, created)
    await captured.wait("financial.payment.processed", created["payload"]["order_id"])

    after = await api.get(
        "/api/v1/transactions/summary", params={"from": today, "to": today, "period": "day"}
    )
    assert after.status_code == 200, after.text
    [totals] = [row for row in after.json()["data"] if row["currency"] == "BRL"]
    earlier = [row for row in before.json()["data"] if row["currency"] == "BRL"]
    credits_before = Decimal(earlier[0]["credits"]) if earlier else Decimal(0)
    count_before = earlier[0]["transactions"] if earlier else 0
    assert totals["period_start"] == today
    # The earlier tests of the module have settled: only this order's credit came in.
    assert Decimal(totals["credits"]) - credits_before == Decimal("31.00")
    assert totals["transactions"] == count_before + 1
    net = Decimal(totals["credits"]) - Decimal(totals["debits"])
    assert Decimal(totals["net"]) == net
    backwards = await api.get(
        "/api/v1/transactions/summary", params={"from": today, "to": "2000-01-01"}
    )
    assert backwards.status_code == 400
    assert backwards.json()["errors"] == [{"field": "to", "message": "must not be before `from`"}]


async def issued_invoice(api: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    generated = await api.post("/api/v1/invoices", json={"order_id": order_id})
    assert generated.status_code == 201, generated.text
    issued = await api.post(f"/api/v1/invoices/{generated.json()['id']}/issue")
    assert issued.status_code == 200, issued.text
    invoice: dict[str, Any] = issued.json()
    return invoice


async def test_a_cancelled_order_cancels_its_invoice(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("480.00")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await captured.wait("financial.payment.processed", order_id)
    invoice = await issued_invoice(api, order_id)
    generated = await captured.wait("financial.invoice.generated", order_id)
    assert generated["payload"]["nfe_key"] == invoice["nfe_key"]

    cancelled = order_cancelled(created, "Out of stock")
    await publish(channel, cancelled)
    gone = await captured.wait("financial.invoice.cancelled", order_id)
    assert_caused_by(gone, cancelled)
    assert (gone["payload"]["invoice_id"], gone["payload"]["reason"]) == (
        invoice["id"],
        "Out of stock",
    )
    after = await api.get(f"/api/v1/invoices/{invoice['id']}")
    assert (after.json()["status"], after.json()["reason"]) == ("cancelled", "Out of stock")
    await settled_payment(api, order_id, "refunded")


async def test_an_invoice_past_its_cancellation_window_dead_letters_the_cancellation(
    api: httpx.AsyncClient,
    channel: aio_pika.abc.AbstractChannel,
    captured: Capture,
    module_env: Mapping[str, str],
) -> None:
    created = order_totalling("490.00")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await captured.wait("financial.payment.processed", order_id)
    invoice = await issued_invoice(api, order_id)
    sent = await api.post(f"/api/v1/invoices/{invoice['id']}/send")
    assert sent.status_code == 200, sent.text
    engine = create_engine(load_settings("financial", 8005, module_env).database_url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE invoices SET issued_at = issued_at - interval '2 days' WHERE id = :id"),
            {"id": invoice["id"]},
        )
    engine.dispose()

    cancelled = order_cancelled(created, "Out of stock")
    await publish(channel, cancelled)
    letter = await take_dead_letter(channel, FINANCIAL_DLQ, cancelled["event_id"], within=30)
    assert letter.header("x-erp-error") == "DeadLetter"
    assert "can no longer be cancelled" in letter.header("x-erp-error-reason")
    # The delivery's effects rolled back with it: the payment is still approved.
    await settled_payment(api, order_id, "approved")
    assert (await api.get(f"/api/v1/invoices/{invoice['id']}")).json()["status"] == "sent"


def test_the_migrations_on_postgresql_match_the_tables(
    financial_service: ServiceProcess, module_env: Mapping[str, str], tmp_path: Path
) -> None:
    settings = load_settings("financial", SERVICE_PORTS["financial"], module_env)
    engine = create_engine(settings.database_url)
    try:
        assert definition.migrations is not None
        assert_migrations_match(definition.migrations, metadata, engine, tmp_path)
    finally:
        engine.dispose()


async def test_erp_dlq_lists_shows_and_replays_financial_dead_letters(
    api: httpx.AsyncClient,
    channel: aio_pika.abc.AbstractChannel,
    captured: Capture,
    module_env: Mapping[str, str],
) -> None:
    created = order_totalling("45.00")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await captured.wait("financial.payment.processed", order_id)
    impostor = order_totalling("4500.00", order_id=order_id)
    await publish(channel, impostor)

    def dlq(*args: str) -> str:
        return erp("dlq", *args, env=module_env)

    async def listed() -> dict[str, Any] | None:
        lines = (await asyncio.to_thread(dlq, "list", "financial")).splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return next((e for e in entries if e["message_id"] == impostor["event_id"]), None)

    entry = await eventually(listed, what="the impostor in `erp dlq list financial`", within=30)
    assert entry["event_name"] == "sales.order.created"
    assert entry["error"] == "DeadLetter"
    assert "another amount" in entry["reason"]
    shown = json.loads(await asyncio.to_thread(dlq, "show", "financial", impostor["event_id"]))
    assert shown["body"] == impostor
    assert shown["queue"] == FINANCIAL_DLQ

    # Replayed, it is refused again (still another order under a known id) and charges nothing.
    replayed = await asyncio.to_thread(dlq, "replay", "financial", impostor["event_id"])
    assert replayed.strip() == "replayed 1 message(s) from financial.dlq"
    letter = await take_dead_letter(channel, FINANCIAL_DLQ, impostor["event_id"], within=30)
    assert "another amount" in letter.header("x-erp-error-reason")
    assert (await settled_payment(api, order_id, "approved"))["amount"] == "45.00"


# ------------------------------------------------------------------ the orders' receivables


async def order_receivable(api: httpx.AsyncClient, order_id: str, status: str) -> dict[str, Any]:
    """The order's account receivable once it is in `status` (there is at most one)."""

    async def reached() -> dict[str, Any] | None:
        response = await api.get("/api/v1/receivables", params={"order_id": order_id})
        assert response.status_code == 200, response.text
        rows = response.json()["data"]
        assert len(rows) <= 1, rows
        return rows[0] if rows and rows[0]["status"] == status else None

    found: dict[str, Any] = await eventually(
        reached, what=f"receivable of {order_id} {status}", within=30, every=POLL
    )
    return found


async def test_an_approved_payment_leaves_its_order_received_and_a_refund_cancels_it(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("480.00")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await publish(channel, {**created, "event_id": str(uuid.uuid4())})  # the same order again
    await captured.wait("financial.payment.processed", order_id)

    payment = await settled_payment(api, order_id, "approved")
    received = await order_receivable(api, order_id, "received")
    assert received["received_at"] == payment["processed_at"]
    assert (received["amount"], received["currency"], received["category"]) == (
        "480.00",
        "BRL",
        "income",
    )
    assert received["customer_id"] == created["payload"]["customer_id"]
    assert received["order_number"] == created["payload"]["order_number"]
    assert received["issue_date"] == received["due_date"]
    by_hand = await api.post(f"/api/v1/receivables/{received['id']}/cancel", json={"reason": "x"})
    assert by_hand.status_code == 409, by_hand.text  # it follows its payment

    await publish(channel, order_cancelled(created))
    await captured.wait("financial.payment.refunded", order_id)
    cancelled = await order_receivable(api, order_id, "cancelled")
    assert cancelled["id"] == received["id"]
    assert cancelled["cancellation_reason"] == "The payment was refunded."


async def test_a_declined_payment_leaves_its_order_receivable_cancelled(
    api: httpx.AsyncClient, channel: aio_pika.abc.AbstractChannel, captured: Capture
) -> None:
    created = order_totalling("80.52")
    order_id = created["payload"]["order_id"]
    await publish(channel, created)
    await captured.wait("financial.payment.failed", order_id)

    cancelled = await order_receivable(api, order_id, "cancelled")
    assert cancelled["received_at"] is None
    assert cancelled["cancellation_reason"] == "The payment was declined."

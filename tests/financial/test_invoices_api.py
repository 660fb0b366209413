"""Financial's invoices over HTTP against the real PostgreSQL (a served app verifying tokens
through a real auth): generating one for a paid order, issuing, sending and cancelling it, the
refusals, gap-free numbers under concurrency, the XML and PDF renditions, and the invoice
cancelled by `sales.order.cancelled`. Payments are made the saga's way (the payment command
with the simulated gateway) in the same database."""

from __future__ import annotations

import asyncio
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import httpx
import pypdf
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from generated.events.models import SalesOrderCancelledEvent, SalesOrderCreatedEvent
from generated.financial import models
from services.financial import consumers, domain
from services.financial.commands import invoices, payments
from services.financial.gateway import SimulatedGateway
from services.financial.issuer import load_issuer
from services.financial.renditions import NFE_NAMESPACE
from services.financial.service import definition
from services.platform.core.contracts import Topology
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import InProcessBus, InProcessRouter
from services.platform.persistence.db import Database
from services.platform.persistence.redis import Keys, connect_redis
from services.platform.runtime.app import create_app
from services.platform.runtime.consumers import DeadLetter
from services.platform.runtime.service import ServiceContext, use_context
from tests.support.events import assert_conforms
from tests.support.http import Api
from tests.support.orders import order_cancelled, order_totalling
from tests.support.problems import problem
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

INVOICES = "/api/v1/invoices"
NS = {"nfe": NFE_NAMESPACE}
REASON = "Pedido cancelado a pedido do cliente"


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]], auth_server: ServerThread) -> Settings:
    return load_settings(
        "financial", 8005, {**scoped_env("invoices"), "ERP_AUTH_URL": auth_server.url}
    )


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(definition, settings)).start() as running:
        yield running


@pytest.fixture(scope="module")
def engine(settings: Settings, server: ServerThread) -> Iterator[Engine]:
    database = create_engine(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
async def ctx(settings: Settings, server: ServerThread) -> AsyncIterator[ServiceContext]:
    """The same database as the served app (migrated by its start-up), for the saga's side."""
    running = ServiceContext(
        definition=definition,
        settings=settings,
        database=Database(settings),
        redis=connect_redis(settings),
        keys=Keys(settings.redis_prefix),
        bus=InProcessBus(InProcessRouter(Topology((), ())), service=definition.name),
        http=httpx.AsyncClient(),
    )
    yield running
    await running.http.aclose()
    await running.redis.aclose()
    await running.database.dispose()


@pytest.fixture
def api(server: ServerThread, admin_token: str) -> Iterator[Api]:
    with Api(server.url, admin_token) as client:
        yield client


async def paid_order(ctx: ServiceContext, total: str = "1250.00") -> dict[str, Any]:
    """A `sales.order.created` envelope whose payment the simulator approved (or declined: a
    total ending in .51)."""
    created = order_totalling(total)
    order = SalesOrderCreatedEvent.model_validate(created)
    async with ctx.unit_of_work() as uow:
        await payments.receive_order(uow, order, payments.Charger(ctx, SimulatedGateway()))
        await uow.commit()  # and then the charge, after the commit
    return created


def generate(api: Api, order: dict[str, Any]) -> dict[str, Any]:
    response = api.post(INVOICES, json={"order_id": order["payload"]["order_id"]})
    assert response.status_code == 201, response.text
    invoice: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{INVOICES}/{invoice['id']}"
    return invoice


def act(api: Api, invoice: dict[str, Any], action: str, **body: Any) -> httpx.Response:
    return api.post(f"{INVOICES}/{invoice['id']}/{action}", json=body or None)


def moved(api: Api, invoice: dict[str, Any], action: str, **body: Any) -> dict[str, Any]:
    response = act(api, invoice, action, **body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def invoice_events(engine: Engine, invoice_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) of the invoice's events in the outbox, each checked against the
    AsyncAPI document."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT event_name, body FROM outbox "
                "WHERE event_name LIKE 'financial.invoice.%' ORDER BY id"
            )
        ).all()
    found = []
    for name, body in rows:
        payload = json.loads(body)["payload"]
        if payload["invoice_id"] == invoice_id:
            assert_conforms(body.encode())
            found.append((name, payload))
    return found


async def test_a_paid_order_gets_a_pending_invoice_with_a_valid_key(
    api: Api, ctx: ServiceContext
) -> None:
    order = await paid_order(ctx, "349.90")
    invoice = generate(api, order)
    issuer = load_issuer({})
    assert invoice["status"] == "pending"
    assert (invoice["order_id"], invoice["order_number"]) == (
        order["payload"]["order_id"],
        order["payload"]["order_number"],
    )
    assert invoice["customer_id"] == order["payload"]["customer_id"]
    assert (invoice["total"], invoice["taxes"], invoice["amount"]) == ("349.90", "62.98", "286.92")
    assert (invoice["tax_rate"], invoice["currency"], invoice["series"]) == ("0.1800", "BRL", "1")
    key = invoice["nfe_key"]
    assert domain.nfe_key_is_valid(key)
    assert key[:2] == issuer.state_code
    assert key[6:20] == issuer.cnpj
    assert key[22:34] == f"{1:03d}{invoice['number']:09d}"
    assert invoice["issued_at"] is None
    assert api.get(f"{INVOICES}/{invoice['id']}").json() == invoice
    assert api.get(f"{INVOICES}/by-order/{invoice['order_id']}").json() == invoice


async def test_issue_send_cancel_each_once_and_announced(
    api: Api, ctx: ServiceContext, engine: Engine
) -> None:
    order = await paid_order(ctx)
    invoice = generate(api, order)
    problem(act(api, invoice, "send"), 409)  # not issued yet

    issued = moved(api, invoice, "issue")
    assert issued["status"] == "issued"
    assert issued["issued_at"] is not None
    conflict = problem(act(api, invoice, "issue"), 409)
    assert conflict["detail"] == (
        f"Invoice {invoice['number']} of series 1 is issued: it cannot become issued."
    )
    sent = moved(api, invoice, "send")
    assert (sent["status"], sent["issued_at"]) == ("sent", issued["issued_at"])
    assert sent["sent_at"] is not None
    problem(act(api, invoice, "send"), 409)

    cancelled = moved(api, invoice, "cancel", reason=REASON)
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", REASON)
    assert cancelled["cancelled_at"] is not None
    problem(act(api, invoice, "cancel", reason=REASON), 409)

    events = invoice_events(engine, invoice["id"])
    assert [name for name, _ in events] == [
        "financial.invoice.generated",
        "financial.invoice.cancelled",
    ]
    generated, gone = events[0][1], events[1][1]
    assert (generated["nfe_key"], generated["number"], generated["total"]) == (
        invoice["nfe_key"],
        invoice["number"],
        "1250.00",
    )
    assert (generated["amount"], generated["taxes"]) == ("1025.00", "225.00")
    assert gone["reason"] == REASON

    # Once cancelled, the order may be invoiced again: the next number, and by-order shows it.
    again = generate(api, order)
    assert again["number"] > invoice["number"]
    assert api.get(f"{INVOICES}/by-order/{invoice['order_id']}").json()["id"] == again["id"]


async def test_pending_and_issued_invoices_can_be_cancelled(api: Api, ctx: ServiceContext) -> None:
    pending = generate(api, await paid_order(ctx))
    assert moved(api, pending, "cancel", reason=REASON)["issued_at"] is None
    problem(act(api, pending, "issue"), 409)
    issued = generate(api, await paid_order(ctx))
    moved(api, issued, "issue")
    assert moved(api, issued, "cancel", reason=REASON)["status"] == "cancelled"


async def test_a_sent_invoice_issued_over_24_hours_ago_is_not_cancelled(
    api: Api, ctx: ServiceContext, engine: Engine
) -> None:
    invoice = generate(api, await paid_order(ctx))
    moved(api, invoice, "issue")
    moved(api, invoice, "send")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE invoices SET issued_at = issued_at - :age WHERE id = :id"),
            {"age": timedelta(hours=25), "id": invoice["id"]},
        )
    refused = problem(act(api, invoice, "cancel", reason=REASON), 409)
    assert "more than 24 hours ago" in refused["detail"]
    assert api.get(f"{INVOICES}/{invoice['id']}").json()["status"] == "sent"


async def test_what_cannot_be_invoiced_is_refused(
    api: Api, ctx: ServiceContext, engine: Engine
) -> None:
    unknown = problem(api.post(INVOICES, json={"order_id": str(uuid4())}), 404)
    assert unknown["detail"].startswith("The payment of order")
    declined = await paid_order(ctx, "100.51")
    refused = problem(api.post(INVOICES, json={"order_id": declined["payload"]["order_id"]}), 409)
    assert "is declined" in refused["detail"]
    order = await paid_order(ctx)
    first = generate(api, order)
    twice = problem(api.post(INVOICES, json={"order_id": order["payload"]["order_id"]}), 409)
    assert twice["detail"] == (
        f"Order {order['payload']['order_number']} already has invoice {first['number']} "
        "of series 1."
    )
    # Cancelled, its refund not recorded yet (that runs after the cancellation's commit): the
    # payment still reads approved, the cancellation refuses the invoice.
    cancelled = await paid_order(ctx)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO order_cancellations (order_id, reason, cancelled_at) "
                "VALUES (:id, 'Customer asked to cancel', now())"
            ),
            {"id": cancelled["payload"]["order_id"]},
        )
    late = problem(api.post(INVOICES, json={"order_id": cancelled["payload"]["order_id"]}), 409)
    assert late["detail"].endswith("is cancelled: it is not invoiced.")
    for action in ("issue", "send", "cancel"):
        problem(act(api, {"id": str(uuid4())}, action, reason=REASON), 404)
    for rendition in ("xml", "pdf"):
        problem(api.get(f"{INVOICES}/{uuid4()}/{rendition}"), 404)
    problem(api.get(f"{INVOICES}/by-order/{uuid4()}"), 404)
    short = problem(act(api, first, "cancel", reason="too short"), 400)
    assert short["errors"][0]["field"] == "reason"


async def test_an_idempotency_key_replays_the_generated_invoice(
    api: Api, ctx: ServiceContext
) -> None:
    order = await paid_order(ctx)
    body = {"order_id": order["payload"]["order_id"]}
    headers = {"Idempotency-Key": str(uuid4())}
    first = api.post(INVOICES, json=body, headers=headers)
    replay = api.post(INVOICES, json=body, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()


async def test_invoices_generated_at_once_get_consecutive_numbers(
    api: Api, ctx: ServiceContext
) -> None:
    orders = [await paid_order(ctx, "99.00") for _ in range(6)]
    with ThreadPoolExecutor(len(orders)) as pool:
        answers = list(
            pool.map(
                lambda order: api.post(INVOICES, json={"order_id": order["payload"]["order_id"]}),
                orders,
            )
        )
    assert [answer.status_code for answer in answers] == [201] * len(orders)
    numbers = sorted(answer.json()["number"] for answer in answers)
    assert numbers == list(range(numbers[0], numbers[0] + len(orders)))


async def test_a_rolled_back_invoice_gives_its_number_back(ctx: ServiceContext) -> None:
    """Gap-free: a second invoice waits for the first one's transaction; when that one rolls
    back, the second gets the very number the first had taken."""
    issuer = load_issuer({})
    first_order, second_order = await paid_order(ctx), await paid_order(ctx)

    async def generate_committed() -> models.Invoice:
        body = models.InvoiceCreate(order_id=UUID(second_order["payload"]["order_id"]))
        async with ctx.unit_of_work() as uow:
            made = await invoices.generate(uow, issuer, body)
            await uow.commit()
        return made

    async with ctx.unit_of_work() as uow:
        body = models.InvoiceCreate(order_id=UUID(first_order["payload"]["order_id"]))
        abandoned = await invoices.generate(uow, issuer, body)
        waiting = asyncio.create_task(generate_committed())
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the second invoice did not wait for the series' counter"
    second = await asyncio.wait_for(waiting, timeout=10)
    assert second.number == abandoned.number


async def test_the_xml_parses_escapes_and_carries_the_key(api: Api, ctx: ServiceContext) -> None:
    invoice = generate(api, await paid_order(ctx))
    moved(api, invoice, "issue")
    hostile = 'Cliente <b>&</b> desistiu "]]></xJust><injected/><xJust>'
    moved(api, invoice, "cancel", reason=hostile)
    response = api.get(f"{INVOICES}/{invoice['id']}/xml")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml"
    root = ET.fromstring(response.content)
    info = root.find("nfe:NFe/nfe:infNFe", NS)
    assert info is not None
    assert info.get("Id") == f"NFe{invoice['nfe_key']}"
    assert info.findtext("nfe:ide/nfe:nNF", namespaces=NS) == str(invoice["number"])
    assert info.findtext("nfe:ide/nfe:serie", namespaces=NS) == "1"
    assert info.findtext("nfe:ide/nfe:cDV", namespaces=NS) == invoice["nfe_key"][-1]
    assert info.findtext("nfe:total/nfe:ICMSTot/nfe:vNF", namespaces=NS) == invoice["total"]
    assert info.findtext("nfe:total/nfe:ICMSTot/nfe:vICMS", namespaces=NS) == invoice["taxes"]
    assert root.findtext("nfe:protNFe/nfe:infProt/nfe:chNFe", namespaces=NS) == invoice["nfe_key"]
    justification = ".//nfe:procEventoNFe/nfe:evento/nfe:infEvento/nfe:detEvento/nfe:xJust"
    assert root.findtext(justification, namespaces=NS) == hostile  # text, not markup
    assert root.find(".//nfe:injected", NS) is None
    assert root.find(".//injected") is None


async def test_the_pdf_opens_and_shows_the_key_and_number(api: Api, ctx: ServiceContext) -> None:
    invoice = generate(api, await paid_order(ctx))
    response = api.get(f"{INVOICES}/{invoice['id']}/pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="nfe-{invoice["nfe_key"]}.pdf"'
    )
    document = pypdf.PdfReader(io.BytesIO(response.content))
    assert len(document.pages) == 1
    page = document.pages[0].extract_text()
    assert invoice["nfe_key"] in page
    assert f"NF-e No {invoice['number']}" in page
    assert invoice["total"] in page
    assert "PENDENTE" in page


async def test_invoices_are_listed_newest_first_and_filtered(api: Api, ctx: ServiceContext) -> None:
    order = await paid_order(ctx)
    cancelled = generate(api, order)
    moved(api, cancelled, "cancel", reason=REASON)
    live = generate(api, order)
    customer = order["payload"]["customer_id"]
    listed = api.get(INVOICES, params={"customer_id": customer}).json()
    assert [row["id"] for row in listed["data"]] == [live["id"], cancelled["id"]]
    assert listed["meta"]["total"] == 2
    only = api.get(INVOICES, params={"customer_id": customer, "status": "cancelled"}).json()
    assert [row["id"] for row in only["data"]] == [cancelled["id"]]
    other_series = api.get(INVOICES, params={"customer_id": customer, "series": "2"}).json()
    assert other_series["data"] == []
    problem(api.get(INVOICES, params={"series": "01"}), 400)


async def cancel_by_event(ctx: ServiceContext, created: dict[str, Any], reason: str) -> None:
    event = SalesOrderCancelledEvent.model_validate(order_cancelled(created, reason))
    with use_context(ctx):  # the consumer's charger is the running service's
        async with ctx.unit_of_work() as uow:
            await consumers.on_sales_order_cancelled(uow, event)
            await uow.commit()  # and then the refund, after the commit


async def test_a_cancelled_order_cancels_its_invoice(
    api: Api, ctx: ServiceContext, engine: Engine
) -> None:
    order = await paid_order(ctx)
    invoice = generate(api, order)
    moved(api, invoice, "issue")
    await cancel_by_event(ctx, order, "Customer asked to cancel")
    after = api.get(f"{INVOICES}/{invoice['id']}").json()
    assert (after["status"], after["reason"]) == ("cancelled", "Customer asked to cancel")
    payment = api.get(f"/api/v1/payments/by-order/{invoice['order_id']}").json()
    assert payment["status"] == "refunded"
    assert [name for name, _ in invoice_events(engine, invoice["id"])] == [
        "financial.invoice.generated",
        "financial.invoice.cancelled",
    ]
    # Redelivered under another event id: nothing left to cancel, nothing announced again.
    await cancel_by_event(ctx, order, "Customer asked to cancel")
    assert len(invoice_events(engine, invoice["id"])) == 2


async def test_an_invoice_past_its_window_dead_letters_the_cancellation(
    api: Api, ctx: ServiceContext, engine: Engine
) -> None:
    order = await paid_order(ctx)
    invoice = generate(api, order)
    moved(api, invoice, "issue")
    moved(api, invoice, "send")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE invoices SET issued_at = issued_at - :age WHERE id = :id"),
            {"age": timedelta(days=2), "id": invoice["id"]},
        )
    with pytest.raises(DeadLetter, match="can no longer be cancelled"):
        await cancel_by_event(ctx, order, "Customer asked to cancel")
    # The whole delivery rolled back: the invoice is sent, the payment still approved.
    assert api.get(f"{INVOICES}/{invoice['id']}").json()["status"] == "sent"
    payment = api.get(f"/api/v1/payments/by-order/{invoice['order_id']}").json()
    assert (payment["status"], Decimal(payment["amount"])) == ("approved", Decimal("1250.00"))

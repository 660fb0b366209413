"""An order followed to the saga's happy end across the six processes: reserved, paid,
confirmed, shipped, invoiced, delivered and completed, with the customer told at every step by
e-mail through a real SMTP server (tests/support/mailsink.py), every message on the wire keeping
the AsyncAPI document and the whole saga one conversation (ADR 0023).

Staff play the warehouse and the carrier over logistics' HTTP API; the events of those moves
continue the order's conversation, each caused by the shipment's previous event.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from tests.e2e.test_orders import run_saga
from tests.support.capture import Capture, causes, check_causality, saga_of, validate_wire
from tests.support.catalog import product_with_stock
from tests.support.customers import customer_with_address
from tests.support.mailsink import SmtpSink

pytestmark = pytest.mark.integration

CARRIER = "E2EPOST"
NFE = "http://www.portalfiscal.inf.br/nfe"
# Each move of the shipment over HTTP, and the event it publishes.
MOVES: list[tuple[str, dict[str, Any], str]] = [
    ("dispatch", {"carrier_code": CARRIER, "service_type": "standard"}, "dispatched"),
    ("in-transit", {"location": "Campinas hub"}, "in_transit"),
    ("out-for-delivery", {"location": "São Paulo"}, "out_for_delivery"),
    ("deliver", {"received_by": "E2E Customer"}, "delivered"),
]
# The customer's e-mails of one order, in the order the saga sends them (subjects).
MAILS = [
    "We received your order {number}",
    "Order {number}: payment approved",
    "Order {number} is confirmed",
    "Order {number} is on its way",
    "Order {number} was delivered",
    "Order {number} is complete",
]


async def test_an_order_is_shipped_invoiced_delivered_completed_and_told_to_its_customer(
    wire: Capture,
    mail: SmtpSink,
    inventory_api: httpx.AsyncClient,
    sales_api: httpx.AsyncClient,
    logistics_api: httpx.AsyncClient,
    financial_api: httpx.AsyncClient,
) -> None:
    product = await product_with_stock(inventory_api, 10, tag="E2E")
    customer = await customer_with_address(sales_api, tag="E2E")
    await carrier(logistics_api)
    mark = len(wire.messages)
    order, _ = await run_saga(
        wire, sales_api, customer.id, [(product, 1)], "logistics.shipment.created"
    )
    created = await wire.wait_for_event("logistics.shipment.created", order["id"])
    shipment = created["payload"]["shipment_id"]
    for step, body, status in MOVES:
        moved = await logistics_api.post(f"/api/v1/shipments/{shipment}/{step}", json=body)
        assert moved.status_code == 200, moved.text
        assert moved.json()["status"] == status
        await wire.wait_for_event(f"logistics.shipment.{status}", order["id"])
    await wire.wait_for_event("sales.order.completed", order["id"])
    await wire.wait_for_event("financial.invoice.generated", order["id"])
    await wire.quiet(1.0)

    # The whole saga keeps the contract and is one conversation, each event caused as designed.
    validate_wire(wire.since(mark))
    saga = saga_of(wire.since(mark), order["id"])
    check_causality(saga)
    caused = causes(saga)
    assert {name: caused[name] for name in AFTER_CONFIRMATION} == AFTER_CONFIRMATION

    shown = (await sales_api.get(f"/api/v1/orders/{order['id']}")).json()
    assert shown["status"] == "completed"
    assert (
        shown["shipment"]["tracking_code"]
        == (saga_event(saga, "logistics.shipment.dispatched")["payload"]["tracking_code"])
    )

    # The invoice made on dispatch, issued, downloadable as XML and PDF.
    found = await financial_api.get(f"/api/v1/invoices/by-order/{order['id']}")
    assert found.status_code == 200, found.text
    invoice = found.json()
    assert (invoice["status"], invoice["total"]) == ("issued", order["total"])
    xml = await financial_api.get(f"/api/v1/invoices/{invoice['id']}/xml")
    assert xml.status_code == 200, xml.text
    assert ET.fromstring(xml.content).findtext(f".//{{{NFE}}}chNFe") == invoice["nfe_key"]
    pdf = await financial_api.get(f"/api/v1/invoices/{invoice['id']}/pdf")
    assert pdf.status_code == 200
    assert order["order_number"] in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()

    # And the customer heard of every step, in order, through the SMTP server.
    received = mail.wait_for(customer.email, count=len(MAILS), within=30)
    subjects = [str(message["Subject"]) for message in received]
    assert subjects == [subject.format(number=order["order_number"]) for subject in MAILS]


AFTER_CONFIRMATION = {
    "logistics.shipment.created": "sales.order.confirmed",
    "logistics.shipment.dispatched": "logistics.shipment.created",
    "sales.order.shipped": "logistics.shipment.dispatched",
    "financial.invoice.generated": "logistics.shipment.dispatched",
    "logistics.shipment.in_transit": "logistics.shipment.dispatched",
    "logistics.shipment.out_for_delivery": "logistics.shipment.in_transit",
    "logistics.shipment.delivered": "logistics.shipment.out_for_delivery",
    "sales.order.completed": "logistics.shipment.delivered",
}


def saga_event(saga: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [event for event in saga if event["event_name"] == name]
    return found


async def carrier(logistics_api: httpx.AsyncClient) -> None:
    """The carrier of these tests (made once; a second call finds it taken)."""
    made = await logistics_api.post(
        "/api/v1/carriers",
        json={"code": CARRIER, "name": "E2E Post", "service_types": ["standard"]},
    )
    assert made.status_code in (201, 409), made.text

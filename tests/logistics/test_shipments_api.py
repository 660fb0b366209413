"""Shipments over HTTP, against the real PostgreSQL, Redis and a real auth: logistics runs under
uvicorn in a thread, as `erp serve` runs it; the shipments are made by the saga's own commands
(as the consumers make them) on the same database."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlmodel import col, select

from generated.events.models import SalesOrderConfirmedPayload
from generated.topology import TOPOLOGY
from services.logistics import demo, domain
from services.logistics.commands import shipments
from services.logistics.service import definition
from services.logistics.tables import metadata
from services.platform import WarehouseAddress
from services.platform.core.settings import Settings, load_settings
from services.platform.messaging.bus import InProcessBus, InProcessRouter
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.app import create_app, spec_path
from services.platform.runtime.service import ServiceContext
from tests.support.contexts import service_context
from tests.support.events import assert_conforms
from tests.support.http import Api
from tests.support.problems import problem
from tests.support.processes import ServerThread
from tests.support.schema import assert_migrations_match

pytestmark = pytest.mark.integration

DESTINATION: dict[str, str | None] = {
    "street": "Rua XV de Novembro",
    "number": "700",
    "complement": None,
    "neighborhood": "Centro",
    "city": "Curitiba",
    "state": "PR",
    "zip_code": "80020-310",
    "country": "BR",
}


@pytest.fixture(scope="module")
def settings(scoped_env: Callable[[str], Mapping[str, str]], auth_server: ServerThread) -> Settings:
    env = {**scoped_env("logistics_shipments"), "ERP_AUTH_URL": auth_server.url}
    return load_settings("logistics", 8004, env)


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(definition, settings)).start() as running:
        yield running


@pytest.fixture(scope="module")
async def ctx(settings: Settings, server: ServerThread) -> AsyncIterator[ServiceContext]:
    """The database the server migrated, for the saga's commands to make shipments on."""
    bus = InProcessBus(InProcessRouter(TOPOLOGY), service="logistics")
    await bus.start()
    async with service_context(definition, settings, bus=bus) as running:
        yield running
    await bus.stop()


@pytest.fixture
def api(server: ServerThread, admin_token: str) -> Iterator[Api]:
    with Api(server.url, admin_token) as client:
        yield client


def new_carrier(api: Api, service_types: list[str]) -> dict[str, Any]:
    body = {
        "code": "T" + uuid.uuid4().hex[:12].upper(),
        "name": "Transportadora",
        "service_types": service_types,
    }
    return api.created("/api/v1/carriers", body)


CONFIRMATION = uuid.UUID("00000000-0000-4000-8000-00000000c0f1")  # the shipments' cause


async def new_shipment(ctx: ServiceContext, *, paid: bool = True) -> str:
    """A confirmed order's shipment (`preparing` when paid, else `pending`), made by the
    `sales.order.confirmed` CONFIRMATION of a conversation of its own; its id."""
    order_id = uuid.uuid4()
    order = SalesOrderConfirmedPayload.model_validate(
        {
            "order_id": str(order_id),
            "order_number": f"ORD-2026-{order_id.int % 1_000_000:06d}",
            "customer_id": str(uuid.uuid4()),
            "customer_email": "cliente@example.com",
            "total": "125.00",
            "currency": "BRL",
            "shipping_address": DESTINATION,
            "items": [{"product_id": str(uuid.uuid4()), "quantity": 1}],
        }
    )
    async with ctx.unit_of_work() as uow:
        if paid:
            await shipments.record_payment(uow, order_id, uuid.uuid4())
        origin = shipments.origin_address(WarehouseAddress())
        created = await shipments.create_for_order(uow, order, origin, CONFIRMATION, uuid.uuid4())
        await uow.commit()
    assert created is not None
    return str(created.id)


async def events_about(ctx: ServiceContext, order_id: str) -> list[dict[str, Any]]:
    """The envelopes logistics committed about the order, oldest first, each checked against
    the AsyncAPI document."""
    async with ctx.database.session() as session:
        rows = await session.scalars(select(OutboxMessage).order_by(col(OutboxMessage.id)))
        bodies = [row.body for row in rows]
    found = []
    for body in bodies:
        envelope = json.loads(body)
        if envelope["payload"].get("order_id") == order_id:
            assert_conforms(body.encode())
            found.append(envelope)
    return found


def test_migrations_match_the_tables_on_postgresql_and_sqlite(
    settings: Settings, server: ServerThread, tmp_path: Path
) -> None:
    engine = create_engine(settings.database_url)
    try:
        assert_migrations_match(Path(definition.migrations or ""), metadata, engine, tmp_path)
    finally:
        engine.dispose()


def move(api: Api, shipment_id: str, action: str, body: dict[str, Any], **kw: Any) -> Any:
    return api.post(f"/api/v1/shipments/{shipment_id}/{action}", json=body, **kw)


async def test_a_shipment_goes_from_preparing_to_delivered(api: Api, ctx: ServiceContext) -> None:
    carrier = new_carrier(api, ["standard", "express"])
    shipment_id = await new_shipment(ctx)
    path = f"/api/v1/shipments/{shipment_id}"
    fetched = api.get(path)
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["etag"] == '"2"'
    assert [e["status"] for e in fetched.json()["history"]] == ["pending", "preparing"]

    dispatched = move(
        api,
        shipment_id,
        "dispatch",
        {"carrier_code": carrier["code"], "service_type": "express", "location": "Campinas"},
        headers={"If-Match": '"2"'},
    )
    assert dispatched.status_code == 200, dispatched.text
    body = dispatched.json()
    assert (body["status"], body["carrier_code"], body["service_type"]) == (
        "dispatched",
        carrier["code"],
        "express",
    )
    code = body["tracking_code"]
    assert len(code) == domain.TRACKING_LENGTH
    assert domain.TRACKING_CODE.match(code)
    today = datetime.now(UTC).date()
    expected = domain.estimated_delivery(
        today, domain.ServiceType.EXPRESS, "13069-000", "80020-310"
    )
    assert body["estimated_delivery_date"] == expected.isoformat()
    assert dispatched.headers["etag"] == '"3"'

    transit = move(api, shipment_id, "in-transit", {"location": "São Paulo", "note": "Hub"})
    assert transit.status_code == 200, transit.text
    out = move(api, shipment_id, "out-for-delivery", {})
    assert out.status_code == 200, out.text
    delivered = move(api, shipment_id, "deliver", {"received_by": "Ana Lima"})
    assert delivered.status_code == 200, delivered.text
    final = delivered.json()
    assert (final["status"], final["received_by"], final["version"]) == ("delivered", "Ana Lima", 6)
    assert final["delivered_at"] is not None
    assert [(e["status"], e["location"], e["note"]) for e in final["history"]] == [
        ("pending", None, None),
        ("preparing", None, None),
        ("dispatched", "Campinas", None),
        ("in_transit", "São Paulo", "Hub"),
        ("out_for_delivery", None, None),
        ("delivered", None, None),
    ]
    assert api.get(path).json() == final

    tracked = api.get(f"/api/v1/tracking/{code.lower()}", headers={"Authorization": ""})
    assert tracked.status_code == 200, tracked.text
    assert tracked.json()["status"] == "delivered"
    assert tracked.json()["destination"] == {"city": "Curitiba", "state": "PR"}

    again = move(api, shipment_id, "deliver", {"received_by": "Ana Lima"})
    assert problem(again, 409)["detail"] == "A shipment that is delivered cannot become delivered."

    announced = await events_about(ctx, final["order_id"])
    assert [event["event_name"] for event in announced] == [
        "logistics.shipment.created",
        "logistics.shipment.dispatched",
        "logistics.shipment.in_transit",
        "logistics.shipment.out_for_delivery",
        "logistics.shipment.delivered",
    ]
    assert announced[1]["payload"]["tracking_code"] == code
    assert announced[2]["payload"]["location"] == "São Paulo"
    assert announced[4]["payload"]["received_by"] == "Ana Lima"
    # Staff's moves continue the order's conversation, each caused by the shipment's last event.
    assert_one_chain(announced)


def assert_one_chain(announced: list[dict[str, Any]]) -> None:
    """One correlation id (the confirmation's); the first event caused by the confirmation,
    each next one by the event before it."""
    assert len({event["correlation_id"] for event in announced}) == 1
    causes = [event["causation_id"] for event in announced]
    assert causes == [str(CONFIRMATION)] + [event["event_id"] for event in announced[:-1]]


async def test_lists_filter_by_status_order_and_carrier(api: Api, ctx: ServiceContext) -> None:
    carrier = new_carrier(api, ["economy"])
    first = await new_shipment(ctx)
    waiting = await new_shipment(ctx, paid=False)
    move(api, first, "dispatch", {"carrier_code": carrier["code"], "service_type": "economy"})
    by_carrier = api.get("/api/v1/shipments", params={"carrier_code": carrier["code"]}).json()
    assert [row["id"] for row in by_carrier["data"]] == [first]
    order_id = api.get(f"/api/v1/shipments/{waiting}").json()["order_id"]
    by_order = api.get("/api/v1/shipments", params={"order_id": order_id}).json()
    assert [row["id"] for row in by_order["data"]] == [waiting]
    pending = api.get("/api/v1/shipments", params={"status": "pending", "per_page": 100}).json()
    assert waiting in [row["id"] for row in pending["data"]]
    assert first not in [row["id"] for row in pending["data"]]
    problem(api.get("/api/v1/shipments", params={"status": "lost"}), 400)


async def test_dispatch_refusals(api: Api, ctx: ServiceContext) -> None:
    carrier = new_carrier(api, ["standard"])
    retired = new_carrier(api, ["standard"])
    api.post(f"/api/v1/carriers/{retired['id']}/deactivate")
    pending = await new_shipment(ctx, paid=False)
    ready = await new_shipment(ctx)
    standard = {"carrier_code": carrier["code"], "service_type": "standard"}

    refused = move(api, pending, "dispatch", standard)
    assert problem(refused, 409)["detail"] == "A shipment that is pending cannot become dispatched."
    for body, field, message in (
        ({**standard, "carrier_code": "NOSUCHCARRIER"}, "carrier_code", "is not a carrier"),
        ({**standard, "carrier_code": retired["code"]}, "carrier_code", "is an inactive carrier"),
        (
            {**standard, "service_type": "express"},
            "service_type",
            "is not a service type the carrier offers",
        ),
    ):
        found = problem(move(api, ready, "dispatch", body), 422)
        assert found["errors"] == [{"field": field, "message": message}]
    problem(move(api, ready, "dispatch", {**standard, "tracking_code": "bad-code!"}), 400)
    problem(move(api, ready, "dispatch", standard, headers={"If-Match": '"1"'}), 412)
    problem(move(api, str(uuid.uuid4()), "dispatch", standard), 404)

    code = "JD" + uuid.uuid4().hex[:10]
    given = move(api, ready, "dispatch", {**standard, "tracking_code": code})
    assert given.status_code == 200, given.text
    assert given.json()["tracking_code"] == code.upper()
    other = await new_shipment(ctx)
    taken = move(api, other, "dispatch", {**standard, "tracking_code": code.upper()})
    assert problem(taken, 409)["detail"] == "Another shipment has this tracking code."
    assert api.get(f"/api/v1/shipments/{other}").json()["status"] == "preparing"


async def test_a_failed_shipment_is_retried_as_the_next_attempt(
    api: Api, ctx: ServiceContext
) -> None:
    shipment_id = await new_shipment(ctx)
    problem(move(api, shipment_id, "retry", {}), 409)  # not failed
    failed = move(api, shipment_id, "fail", {"reason": "Address not found"})
    assert failed.status_code == 200, failed.text
    assert (failed.json()["status"], failed.json()["failure_reason"]) == (
        "failed",
        "Address not found",
    )
    assert failed.json()["tracking_code"] is None  # failed before dispatch
    problem(move(api, shipment_id, "fail", {"reason": "again"}), 409)

    retried = move(api, shipment_id, "retry", {"note": "Repacked"})
    assert retried.status_code == 201, retried.text
    second = retried.json()
    assert retried.headers["location"] == f"/api/v1/shipments/{second['id']}"
    assert (second["status"], second["attempt"]) == ("preparing", 2)
    assert second["history"][0]["note"] == "Repacked"
    problem(move(api, shipment_id, "retry", {}), 409)  # the order has a live shipment
    listed = api.get("/api/v1/shipments", params={"order_id": second["order_id"]}).json()
    assert sorted(row["attempt"] for row in listed["data"]) == [1, 2]

    move(api, second["id"], "fail", {"reason": "Damaged"})
    old = problem(move(api, shipment_id, "retry", {}), 409)
    assert old["detail"] == "Only the order's latest shipment can be retried."
    announced = await events_about(ctx, second["order_id"])
    assert [(e["event_name"], e["payload"].get("attempt")) for e in announced] == [
        ("logistics.shipment.created", 1),
        ("logistics.shipment.failed", None),
        ("logistics.shipment.created", 2),
        ("logistics.shipment.failed", None),
    ]
    assert announced[1]["payload"]["tracking_code"] is None
    assert_one_chain(announced)  # the retry continues the conversation too


async def test_a_dispatch_repeated_under_its_idempotency_key_is_replayed(
    api: Api, ctx: ServiceContext
) -> None:
    carrier = new_carrier(api, ["standard"])
    shipment_id = await new_shipment(ctx)
    body = {"carrier_code": carrier["code"], "service_type": "standard"}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = move(api, shipment_id, "dispatch", body, headers=key)
    second = move(api, shipment_id, "dispatch", body, headers=key)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    problem(move(api, shipment_id, "dispatch", body), 409)  # without the key: a new request


async def test_bad_input_is_400_and_unknown_ids_404(api: Api) -> None:
    unknown = str(uuid.uuid4())
    problem(api.get(f"/api/v1/shipments/{unknown}"), 404)
    problem(api.get("/api/v1/shipments/not-a-uuid"), 400)
    problem(move(api, unknown, "deliver", {}), 400)  # received_by is required
    problem(move(api, unknown, "fail", {"reason": ""}), 400)
    problem(move(api, unknown, "in-transit", {"location": "x" * 256}), 400)
    problem(move(api, unknown, "in-transit", {}), 404)


async def test_the_demo_shipment_is_the_specs_example(api: Api, ctx: ServiceContext) -> None:
    """The get and tracking examples are what the demo data set answers, field for field."""
    await demo.seed_demo(ctx)
    await demo.seed_demo(ctx)  # idempotent
    paths = json.loads(spec_path("logistics").read_bytes())["paths"]

    def example(path: str) -> Any:
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]
        return ok["example"]

    shipment = api.get(f"/api/v1/shipments/{demo.IN_TRANSIT}")
    assert shipment.json() == example("/api/v1/shipments/{shipment_id}")
    tracked = api.get(f"/api/v1/tracking/{demo.TRACKING_CODE}", headers={"Authorization": ""})
    assert tracked.json() == example("/api/v1/tracking/{tracking_code}")

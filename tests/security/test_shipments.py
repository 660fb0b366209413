"""Probes of logistics' shipments against `erp serve logistics` on the real PostgreSQL and
RabbitMQ: public tracking shows nothing personal and tells an unknown code from nothing; the
staff endpoints are closed to anonymous and unprivileged callers; forged confirmations make no
shipment; hostile text is stored and returned literally."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aio_pika
import pytest

from services.logistics.queries import TRACKING_MISSES
from tests.support.accounts import Member
from tests.support.events import envelope
from tests.support.http import Api, new_ip
from tests.support.orders import ADDRESS
from tests.support.polling import eventually
from tests.support.problems import problem
from tests.support.processes import ServiceProcess
from tests.support.wire import publish_body, take_dead_letter

pytestmark = pytest.mark.integration

EMAIL = "privada.pessoa@example.com"
HOSTILE = [
    "'; DROP TABLE shipments; --",
    "<script>alert(1)</script>",
    "{{7*7}} ${7*7} %s %n",
    "Robert'); DELETE FROM shipment_history WHERE ('1'='1",
]
STAFF_OPERATIONS = [
    ("get", "/api/v1/shipments"),
    ("get", "/api/v1/shipments/{id}"),
    ("post", "/api/v1/shipments/{id}/dispatch"),
    ("post", "/api/v1/shipments/{id}/in-transit"),
    ("post", "/api/v1/shipments/{id}/out-for-delivery"),
    ("post", "/api/v1/shipments/{id}/deliver"),
    ("post", "/api/v1/shipments/{id}/fail"),
    ("post", "/api/v1/shipments/{id}/retry"),
]


@pytest.fixture(scope="module")
async def channel(
    security_env: Mapping[str, str], logistics_app: ServiceProcess
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel on the suite's vhost, once logistics has declared its queue."""
    connection = await aio_pika.connect_robust(security_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


@pytest.fixture
def staff(logistics_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    with Api(logistics_app.url, root_token, ip=new_ip()) as api:
        yield api


@pytest.fixture
def anonymous(logistics_app: ServiceProcess) -> Iterator[Api]:
    with Api(logistics_app.url, ip=new_ip()) as api:
        yield api


def confirmed(order_id: str, **changes: Any) -> dict[str, Any]:
    return envelope(
        "sales.order.confirmed",
        {
            "order_id": order_id,
            "order_number": f"ORD-2026-{uuid.UUID(order_id).int % 1_000_000:06d}",
            "customer_id": str(uuid.uuid4()),
            "customer_email": EMAIL,
            "total": "99.90",
            "currency": "BRL",
            "shipping_address": ADDRESS,
            "items": [{"product_id": str(uuid.uuid4()), "quantity": 1}],
        },
        **changes,
    )


def processed(order_id: str) -> dict[str, Any]:
    return envelope(
        "financial.payment.processed",
        {
            "order_id": order_id,
            "order_number": f"ORD-2026-{uuid.UUID(order_id).int % 1_000_000:06d}",
            "payment_id": str(uuid.uuid4()),
            "customer_id": str(uuid.uuid4()),
            "customer_email": EMAIL,
            "amount": "99.90",
            "currency": "BRL",
            "method": "pix",
            "gateway_reference": "SIM-9",
            "processed_at": "2026-01-01T00:00:00Z",
        },
    )


async def publish(channel: aio_pika.abc.AbstractChannel, body: dict[str, Any]) -> None:
    exchange = body["event_name"].split(".")[0] + ".events"
    await publish_body(
        channel,
        exchange,
        body["event_name"],
        json.dumps(body).encode(),
        message_id=body["event_id"],
        correlation_id=body["correlation_id"],
    )


def shipments_of(staff: Api, order_id: str) -> list[dict[str, Any]]:
    response = staff.get("/api/v1/shipments", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


async def preparing_shipment(channel: aio_pika.abc.AbstractChannel, staff: Api) -> dict[str, Any]:
    order_id = str(uuid.uuid4())
    await publish(channel, processed(order_id))
    await publish(channel, confirmed(order_id))

    def made() -> dict[str, Any] | None:
        found = shipments_of(staff, order_id)
        return found[0] if found and found[0]["status"] == "preparing" else None

    shipment: dict[str, Any] = await eventually(made, what="the shipment", within=20)
    return shipment


def a_carrier(staff: Api) -> str:
    code = "S" + uuid.uuid4().hex[:10].upper()
    staff.created("/api/v1/carriers", {"code": code, "name": "Sec", "service_types": ["standard"]})
    return code


async def test_public_tracking_shows_nothing_personal(
    channel: aio_pika.abc.AbstractChannel, staff: Api, anonymous: Api
) -> None:
    shipment = await preparing_shipment(channel, staff)
    path = f"/api/v1/shipments/{shipment['id']}"
    body = {"carrier_code": a_carrier(staff), "service_type": "standard"}
    dispatched = staff.post(f"{path}/dispatch", json=body)
    assert dispatched.status_code == 200, dispatched.text
    note = "Call Sr. Privado on 11 99999-0000"
    staff.post(f"{path}/in-transit", json={"location": "Hub Sul", "note": note})
    staff.post(f"{path}/out-for-delivery", json={})
    staff.post(f"{path}/deliver", json={"received_by": "Fulano Privado da Silva"})

    code = dispatched.json()["tracking_code"]
    tracked = anonymous.get(f"/api/v1/tracking/{code}")
    assert tracked.status_code == 200, tracked.text
    shown = tracked.json()
    assert set(shown) == {
        "tracking_code",
        "status",
        "carrier_code",
        "service_type",
        "estimated_delivery_date",
        "dispatched_at",
        "delivered_at",
        "destination",
        "history",
    }
    assert shown["destination"] == {"city": ADDRESS["city"], "state": ADDRESS["state"]}
    assert {key for entry in shown["history"] for key in entry} == {
        "status",
        "message",
        "location",
        "occurred_at",
    }
    text = tracked.text
    for secret in (
        EMAIL,
        ADDRESS["street"],
        ADDRESS["zip_code"],
        "Fulano Privado",
        note,
        shipment["order_id"],
        shipment["order_number"],
        shipment["id"],
    ):
        assert str(secret) not in text, secret


async def test_tracking_does_not_enumerate(anonymous: Api) -> None:
    """A code no shipment has is a 404 that says only that; a malformed or hostile one is the
    kit's 400, which never repeats the value: a problem either way, nothing to learn."""
    unknown = problem(anonymous.get("/api/v1/tracking/ZZZZZZZZZZZZZ"), 404)
    assert unknown["detail"] == "No shipment has this tracking code."
    assert set(unknown) == {"type", "title", "status", "detail", "instance"}
    for code in ("abc", "A" * 41, "%27%20OR%201%3D1--", "QF7K2M9XR4TB%25"):
        malformed = problem(anonymous.get(f"/api/v1/tracking/{code}"), 400)
        assert set(malformed) <= {"type", "title", "status", "detail", "instance", "errors"}
        assert "OR 1=1" not in malformed["detail"]
        assert [error["field"] for error in malformed["errors"]] == ["tracking_code"]


async def test_a_client_walking_through_codes_is_stopped_and_a_found_code_never_counts(
    channel: aio_pika.abc.AbstractChannel, staff: Api, logistics_app: ServiceProcess
) -> None:
    shipment = await preparing_shipment(channel, staff)
    body = {"carrier_code": a_carrier(staff), "service_type": "standard"}
    dispatched = staff.post(f"/api/v1/shipments/{shipment['id']}/dispatch", json=body)
    code = dispatched.json()["tracking_code"]
    with Api(logistics_app.url, ip=new_ip()) as prober:
        for _ in range(TRACKING_MISSES + 5):  # found codes are given back
            assert prober.get(f"/api/v1/tracking/{code}").status_code == 200
        for attempt in range(TRACKING_MISSES):
            problem(prober.get(f"/api/v1/tracking/PROBE{attempt:08d}"), 404)
        stopped = problem(prober.get("/api/v1/tracking/PROBE99999999"), 429)
        assert "Rate limit" in stopped["detail"]
    with Api(logistics_app.url, ip=new_ip()) as other:
        problem(other.get("/api/v1/tracking/PROBE99999999"), 404)  # another address: its own


@pytest.mark.parametrize(("method", "path"), STAFF_OPERATIONS)
def test_staff_endpoints_refuse_anonymous_and_unprivileged_callers(
    logistics_app: ServiceProcess, plain_member: Member, method: str, path: str
) -> None:
    url = path.format(id=uuid.uuid4())
    body: dict[str, Any] | None = {} if method == "post" else None
    with Api(logistics_app.url, ip=new_ip()) as api:
        problem(api(method, url, json=body), 401)
        problem(api(method, url, token=plain_member.access_token, json=body), 403)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"metadata": {"service": "financial", "user_id": None, "trace_id": None}},
            "producer: sales.order.confirmed is published by sales, not by 'financial' "
            "(metadata.service)",
        ),
        ({"payload": "not an object"}, "schema: payload: 'not an object' is not of type 'object'"),
    ],
)
async def test_a_forged_confirmation_is_dead_lettered_and_makes_no_shipment(
    channel: aio_pika.abc.AbstractChannel,
    staff: Api,
    change: dict[str, Any],
    reason: str,
) -> None:
    order_id = str(uuid.uuid4())
    forged = {**confirmed(order_id), **change}
    await publish(channel, forged)
    refusal = await take_dead_letter(channel, "logistics.dlq", forged["event_id"])
    assert refusal.header("x-erp-error-reason") == reason
    assert shipments_of(staff, order_id) == []


async def test_a_confirmation_with_a_bad_address_is_dead_lettered(
    channel: aio_pika.abc.AbstractChannel, staff: Api
) -> None:
    order_id = str(uuid.uuid4())
    forged = confirmed(order_id)
    forged["payload"]["shipping_address"] = {**ADDRESS, "state": "sp'; --"}
    await publish(channel, forged)
    refusal = await take_dead_letter(channel, "logistics.dlq", forged["event_id"])
    assert str(refusal.header("x-erp-error-reason")).startswith(
        "schema: payload.shipping_address.state:"
    )
    assert shipments_of(staff, order_id) == []


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_text_is_stored_and_returned_literally(
    channel: aio_pika.abc.AbstractChannel, staff: Api, anonymous: Api, hostile: str
) -> None:
    shipment = await preparing_shipment(channel, staff)
    path = f"/api/v1/shipments/{shipment['id']}"
    body = {"carrier_code": a_carrier(staff), "service_type": "standard", "location": hostile}
    dispatched = staff.post(f"{path}/dispatch", json=body)
    assert dispatched.status_code == 200, dispatched.text
    staff.post(f"{path}/out-for-delivery", json={"location": hostile, "note": hostile})
    delivered = staff.post(f"{path}/deliver", json={"received_by": hostile, "note": hostile})
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["received_by"] == hostile
    assert [entry["location"] for entry in delivered.json()["history"]][2:4] == [hostile, hostile]
    tracked = anonymous.get(f"/api/v1/tracking/{dispatched.json()['tracking_code']}").json()
    assert tracked["history"][2]["location"] == hostile

    other = await preparing_shipment(channel, staff)
    failed = staff.post(f"/api/v1/shipments/{other['id']}/fail", json={"reason": hostile})
    assert failed.status_code == 200, failed.text
    assert failed.json()["failure_reason"] == hostile
    assert staff.get(f"/api/v1/shipments/{other['id']}").json()["history"][-1]["note"] == hostile

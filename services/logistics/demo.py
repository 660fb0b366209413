"""The logistics part of the demo data set: the carriers whose ids the spec's examples use
(specs/openapi/logistics.yaml) — Correios (every service type), Jadlog (standard and express)
and Translog (economy; the deactivation example's) — and the shipments of financial's two paid
demo orders: ORD-2025-000043's, in transit with Correios under the tracking code QF7K2M9XR4TBZ
(the tracking, get, fail and retry examples'), and ORD-2025-000044's, preparing (the dispatch,
in-transit, out-for-delivery and deliver examples', in that order).

Loaded by embedded `erp up` and by `erp demo seed` (docs/adr/0008-docs-that-work.md);
idempotent: what exists already is kept.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from uuid import UUID

from services.logistics.commands.shipments import MESSAGES
from services.logistics.domain import ShipmentStatus
from services.logistics.tables import Carrier, OrderSignal, Shipment, ShipmentHistory
from services.platform import ServiceContext, UnitOfWork, WarehouseAddress

CORREIOS = UUID("5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
JADLOG = UUID("6b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e")
TRANSLOG = UUID("7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f")
JOINED = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)

CARRIERS = (
    (CORREIOS, "CORREIOS", "Correios", ["standard", "express", "economy"]),
    (JADLOG, "JADLOG", "Jadlog", ["standard", "express"]),
    (TRANSLOG, "TRANSLOG", "Translog Econômica", ["economy"]),
)


IN_TRANSIT = UUID("1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b")
IN_TRANSIT_ORDER = UUID("0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
PREPARING = UUID("3a4b5c6d-7e8f-4a9b-8c0d-1e2f3a4b5c6d")
PREPARING_ORDER = UUID("2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f60")
TRACKING_CODE = "QF7K2M9XR4TBZ"
ORIGIN = asdict(WarehouseAddress())
PAULISTA = {
    "street": "Avenida Paulista",
    "number": "1000",
    "complement": "Apto 12",
    "neighborhood": "Bela Vista",
    "city": "São Paulo",
    "state": "SP",
    "zip_code": "01310-100",
    "country": "BR",
}
ASSEMBLEIA = {
    "street": "Rua da Assembleia",
    "number": "10",
    "complement": "Sala 501",
    "neighborhood": "Centro",
    "city": "Rio de Janeiro",
    "state": "RJ",
    "zip_code": "20011-000",
    "country": "BR",
}


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 2, day, hour, minute, tzinfo=UTC)


def _shipments() -> list[tuple[Shipment, list[tuple[ShipmentStatus, str | None, datetime]]]]:
    in_transit = Shipment(
        id=IN_TRANSIT,
        order_id=IN_TRANSIT_ORDER,
        order_number="ORD-2025-000043",
        customer_email="joao@example.com",
        status=ShipmentStatus.IN_TRANSIT.value,
        attempt=1,
        origin=ORIGIN,
        destination=PAULISTA,
        carrier_code="CORREIOS",
        service_type="standard",
        tracking_code=TRACKING_CODE,
        estimated_delivery_date=date(2025, 2, 10),
        dispatched_at=_at(3, 15),
        created_at=_at(3, 10, 5),
        updated_at=_at(4, 6),
        version=4,
    )
    preparing = Shipment(
        id=PREPARING,
        order_id=PREPARING_ORDER,
        order_number="ORD-2025-000044",
        customer_email="joao@example.com",
        status=ShipmentStatus.PREPARING.value,
        attempt=1,
        origin=ORIGIN,
        destination=ASSEMBLEIA,
        created_at=_at(5, 9),
        updated_at=_at(5, 9, 5),
        version=2,
    )
    return [
        (
            in_transit,
            [
                (ShipmentStatus.PENDING, None, _at(3, 10, 5)),
                (ShipmentStatus.PREPARING, None, _at(3, 10, 5)),
                (ShipmentStatus.DISPATCHED, "Campinas, SP", _at(3, 15)),
                (ShipmentStatus.IN_TRANSIT, "Jundiaí, SP", _at(4, 6)),
            ],
        ),
        (
            preparing,
            [
                (ShipmentStatus.PENDING, None, _at(5, 9)),
                (ShipmentStatus.PREPARING, None, _at(5, 9, 5)),
            ],
        ),
    ]


async def _seed_shipments(uow: UnitOfWork) -> None:
    for shipment, moves in _shipments():
        if await uow.session.get(Shipment, shipment.id) is not None:
            continue
        uow.session.add(shipment)
        uow.session.add(
            OrderSignal(order_id=shipment.order_id, paid=True, updated_at=shipment.created_at)
        )
        await uow.session.flush()
        uow.session.add_all(
            ShipmentHistory(
                shipment_id=shipment.id,
                status=status.value,
                message=MESSAGES[status],
                location=location,
                occurred_at=at,
            )
            for status, location, at in moves
        )
        await uow.session.flush()


async def seed_demo(ctx: ServiceContext) -> None:
    async with ctx.unit_of_work() as uow:
        for identifier, code, name, service_types in CARRIERS:
            if await uow.session.get(Carrier, identifier) is None:
                uow.session.add(
                    Carrier(
                        id=identifier,
                        code=code,
                        name=name,
                        service_types=service_types,
                        active=True,
                        created_at=JOINED,
                        updated_at=JOINED,
                    )
                )
                await uow.session.flush()
        await _seed_shipments(uow)
        await uow.commit()

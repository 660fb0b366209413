"""The logistics service's reads: each takes the running `ServiceContext` and returns the
generated response model (or the rows a command needs)."""

from __future__ import annotations

from uuid import UUID

from sqlmodel import col, select

from generated.logistics import models
from services.logistics.commands.shipments import history_of, shipment_model
from services.logistics.tables import Carrier, Shipment, ShipmentHistory
from services.platform import (
    Page,
    Problem,
    ServiceContext,
    page_of,
    paginate,
    rate_limit,
    refund_rate_limit,
    resource_not_found,
)

# Says nothing but that: which codes exist is not for the public to learn.
_NO_SUCH_CODE = Problem(404, detail="No shipment has this tracking code.")
# Unknown codes a client address may ask for per window: a customer mistyping hers a few times
# is far below it, a prober walking through codes far above.
TRACKING_MISSES = 60
TRACKING_WINDOW_SECONDS = 600


async def list_carriers(
    ctx: ServiceContext, *, active: bool | None, page: int, per_page: int
) -> models.CarrierList:
    statement = select(Carrier).order_by(col(Carrier.code))
    if active is not None:
        statement = statement.where(col(Carrier.active) == active)
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.CarrierList, rows, meta)


async def get_carrier(ctx: ServiceContext, carrier_id: UUID) -> models.Carrier:
    async with ctx.database.read_session() as session:
        found = await session.get(Carrier, carrier_id)
    if found is None:
        raise resource_not_found("Carrier", carrier_id)
    return models.Carrier.model_validate(found, from_attributes=True)


async def active_carriers(ctx: ServiceContext) -> list[Carrier]:
    """Every active carrier, by code (the ones a quote asks)."""
    statement = select(Carrier).where(col(Carrier.active)).order_by(col(Carrier.code))
    async with ctx.database.read_session() as session:
        return list(await session.scalars(statement))


async def list_shipments(
    ctx: ServiceContext,
    *,
    status: str | None,
    order_id: UUID | None,
    carrier_code: str | None,
    page: int,
    per_page: int,
) -> models.ShipmentList:
    statement = select(Shipment).order_by(col(Shipment.created_at).desc(), col(Shipment.id))
    if status is not None:
        statement = statement.where(col(Shipment.status) == status)
    if order_id is not None:
        statement = statement.where(col(Shipment.order_id) == order_id)
    if carrier_code is not None:
        statement = statement.where(col(Shipment.carrier_code) == carrier_code)
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
        history = await history_of(session, [row.id for row in rows])
    return page_of(
        models.ShipmentList, [shipment_model(row, history[row.id]) for row in rows], meta
    )


async def get_shipment(ctx: ServiceContext, shipment_id: UUID) -> models.Shipment:
    async with ctx.database.read_session() as session:
        found = await session.get(Shipment, shipment_id)
        if found is None:
            raise resource_not_found("Shipment", shipment_id)
        history = await history_of(session, [found.id])
    return shipment_model(found, history[found.id])


def _tracking(row: Shipment, history: list[ShipmentHistory]) -> models.Tracking:
    """What anyone may see: no e-mail, street, name of who received it, order or staff note."""
    return models.Tracking.model_validate(
        {
            "tracking_code": row.tracking_code,
            "status": row.status,
            "carrier_code": row.carrier_code,
            "service_type": row.service_type,
            "estimated_delivery_date": row.estimated_delivery_date,
            "dispatched_at": row.dispatched_at,
            "delivered_at": row.delivered_at,
            "destination": {
                "city": row.destination["city"],
                "state": row.destination["state"],
            },
            "history": [
                {
                    "status": entry.status,
                    "message": entry.message,
                    "location": entry.location,
                    "occurred_at": entry.occurred_at,
                }
                for entry in history
            ],
        }
    )


async def track_shipment(
    ctx: ServiceContext, tracking_code: str, client_ip: str | None
) -> models.Tracking:
    """The public tracking of a code. Every lookup counts against the client address, a found
    one is given back: only misses are limited (429 past TRACKING_MISSES per window)."""
    key = ctx.keys("logistics", "ratelimit", "tracking-misses", client_ip or "unknown")
    await rate_limit(ctx.redis, key, TRACKING_MISSES, TRACKING_WINDOW_SECONDS)
    code = tracking_code.upper()  # the spec's pattern let letters of either case through
    async with ctx.database.read_session() as session:
        statement = select(Shipment).where(col(Shipment.tracking_code) == code)
        found = (await session.scalars(statement)).first()
        if found is None:
            raise _NO_SUCH_CODE
        history = await history_of(session, [found.id])
    await refund_rate_limit(ctx.redis, key)
    return _tracking(found, history[found.id])

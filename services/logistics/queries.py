"""The logistics service's reads: each takes the running `ServiceContext` and returns the
generated response model (or the rows a command needs)."""

from __future__ import annotations

from uuid import UUID

from sqlmodel import col, select

from generated.logistics import models
from services.logistics.tables import Carrier
from services.platform import Page, ServiceContext, page_of, paginate, resource_not_found


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

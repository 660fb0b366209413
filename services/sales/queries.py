"""The sales service's reads: each takes the running `ServiceContext` and returns the generated
response model. A customer's addresses come with it (one more statement per page, not per row).
"""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from sqlalchemy import func, or_
from sqlmodel import col, select

from generated.sales import models
from services.platform import Page, ServiceContext, page_of, paginate, resource_not_found
from services.sales.commands.customers import customer_model
from services.sales.tables import Customer, CustomerAddress


def _like(text: str, *, anywhere: bool) -> str:
    """A case-insensitive LIKE pattern matching `text` (ESCAPE '\\')."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%" if anywhere else f"{escaped}%"


async def list_customers(
    ctx: ServiceContext, *, search: str | None, status: str | None, page: int, per_page: int
) -> models.CustomerList:
    statement = select(Customer).order_by(col(Customer.name), col(Customer.id))
    if search is not None:
        anywhere = _like(search, anywhere=True)
        statement = statement.where(
            or_(
                func.lower(col(Customer.name)).like(anywhere, escape="\\"),
                col(Customer.email).like(anywhere, escape="\\"),
                col(Customer.document).like(_like(search, anywhere=False), escape="\\"),
            )
        )
    if status is not None:
        statement = statement.where(col(Customer.status) == status)
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
        by_customer: dict[UUID, list[CustomerAddress]] = defaultdict(list)
        if rows:
            addresses = await session.scalars(
                select(CustomerAddress)
                .where(col(CustomerAddress.customer_id).in_([row.id for row in rows]))
                .order_by(col(CustomerAddress.position))
            )
            for address in addresses:
                by_customer[address.customer_id].append(address)
    data = [customer_model(row, by_customer[row.id]) for row in rows]
    return page_of(models.CustomerList, data, meta)


async def get_customer(ctx: ServiceContext, customer_id: UUID) -> models.Customer:
    async with ctx.database.read_session() as session:
        customer = await session.get(Customer, customer_id)
        if customer is None:
            raise resource_not_found("Customer", customer_id)
        addresses = await session.scalars(
            select(CustomerAddress)
            .where(col(CustomerAddress.customer_id) == customer_id)
            .order_by(col(CustomerAddress.position))
        )
        return customer_model(customer, list(addresses))

"""The sales service's reads: each takes the running `ServiceContext` and returns the generated
response model. A customer's addresses come with it (one more statement per page, not per row).
"""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from sqlalchemy import func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.sales import models
from services.platform import (
    LIKE_ESCAPE,
    Caller,
    Page,
    ServiceContext,
    like_pattern,
    page_of,
    paginate,
    resource_not_found,
)
from services.sales.commands import orders
from services.sales.commands.customers import customer_model
from services.sales.tables import Customer, CustomerAddress, Order, OrderStatusChange


async def list_customers(
    ctx: ServiceContext, *, search: str | None, status: str | None, page: int, per_page: int
) -> models.CustomerList:
    statement = select(Customer).order_by(col(Customer.name), col(Customer.id))
    if search is not None:
        anywhere, start = like_pattern(search), like_pattern(search, anywhere=False)
        statement = statement.where(
            or_(
                func.lower(col(Customer.name)).like(anywhere, escape=LIKE_ESCAPE),
                col(Customer.email).like(anywhere, escape=LIKE_ESCAPE),
                col(Customer.document).like(start, escape=LIKE_ESCAPE),
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


# --- orders: staff with sales.orders.view see all; anyone else only their own -----------------


async def _visible(session: AsyncSession, caller: Caller) -> UUID | bool | None:
    """True when the caller sees every order, else the one customer whose orders they see
    (None: they are no customer, and see none)."""
    if orders.can_see_all(caller):
        return True
    return await orders.own_customer_id(session, caller)


async def list_orders(
    ctx: ServiceContext,
    caller: Caller,
    *,
    status: str | None,
    customer_id: UUID | None,
    page: int,
    per_page: int,
) -> models.OrderList:
    statement = select(Order).order_by(col(Order.created_at).desc(), col(Order.id))
    if status is not None:
        statement = statement.where(col(Order.status) == status)
    if customer_id is not None:
        statement = statement.where(col(Order.customer_id) == customer_id)
    async with ctx.database.read_session() as session:
        visible = await _visible(session, caller)
        if visible is not True:
            statement = statement.where(col(Order.customer_id) == visible)
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
        lines = await orders.order_items(session, [row.id for row in rows]) if rows else {}
    return page_of(models.OrderList, [orders.order_model(r, lines[r.id]) for r in rows], meta)


async def _visible_order(session: AsyncSession, caller: Caller, order_id: UUID) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise resource_not_found("Order", order_id)
    visible = await _visible(session, caller)
    if visible is not True and order.customer_id != visible:
        raise resource_not_found("Order", order_id)  # another's order: as if it did not exist
    return order


async def get_order(ctx: ServiceContext, caller: Caller, order_id: UUID) -> models.Order:
    async with ctx.database.read_session() as session:
        order = await _visible_order(session, caller, order_id)
        lines = await orders.order_items(session, [order_id])
    return orders.order_model(order, lines[order_id])


async def get_order_history(
    ctx: ServiceContext, caller: Caller, order_id: UUID
) -> models.OrderHistory:
    async with ctx.database.read_session() as session:
        await _visible_order(session, caller, order_id)
        changes = await session.scalars(
            select(OrderStatusChange)
            .where(col(OrderStatusChange.order_id) == order_id)
            .order_by(col(OrderStatusChange.id))
        )
        entries = list(changes)
    return models.OrderHistory.model_validate({"data": entries}, from_attributes=True)

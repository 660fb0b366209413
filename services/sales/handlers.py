"""HTTP handlers of the sales service: one coroutine per operationId of
specs/openapi/sales.yaml, typed by the generated `SalesHandlers` (service.py checks).

Each states its intent — one query or one command — and returns the response model. The kit
does what the spec declares: parameters and body checked and typed, permissions, the unit of
work of a write (committed after the handler), Idempotency-Key, status, ETag and Location.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from generated.sales import models
from services.platform import Call, WriteCall
from services.sales import catalogue, queries
from services.sales.commands import customers, orders


async def list_customers(
    call: Call,
    *,
    search: str | None = None,
    status: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.CustomerList:
    return await queries.list_customers(
        call.ctx, search=search, status=status, page=page, per_page=per_page
    )


async def create_customer(call: WriteCall, *, body: models.CustomerCreate) -> models.Customer:
    return await customers.create_customer(call.uow, body)


async def get_customer(call: Call, *, customer_id: UUID) -> models.Customer:
    return await queries.get_customer(call.ctx, customer_id)


async def update_customer(
    call: WriteCall,
    *,
    customer_id: UUID,
    body: models.CustomerUpdate,
    if_match: str | None = None,
) -> models.Customer:
    return await customers.update_customer(call.uow, customer_id, body, if_match)


async def add_customer_address(
    call: WriteCall, *, customer_id: UUID, body: models.AddressCreate
) -> models.CustomerAddress:
    return await customers.add_address(call.uow, customer_id, body)


async def update_customer_address(
    call: WriteCall, *, customer_id: UUID, address_id: UUID, body: models.AddressUpdate
) -> models.CustomerAddress:
    return await customers.update_address(call.uow, customer_id, address_id, body)


async def delete_customer_address(call: WriteCall, *, customer_id: UUID, address_id: UUID) -> None:
    await customers.delete_address(call.uow, customer_id, address_id)


async def list_orders(
    call: Call,
    *,
    status: str | None = None,
    customer_id: UUID | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.OrderList:
    return await queries.list_orders(
        call.ctx,
        call.caller,
        status=status,
        customer_id=customer_id,
        page=page,
        per_page=per_page,
    )


async def create_order(call: WriteCall, *, body: models.OrderCreate) -> models.Order:
    inventory = catalogue.inventory_client(call.ctx)

    async def products(ids: Sequence[UUID]) -> dict[UUID, catalogue.ProductSnapshot]:
        return await catalogue.products_for_order(call.uow, inventory, ids)

    return await orders.place_order(call.uow, call.caller, body, products)


async def get_order(call: Call, *, order_id: UUID) -> models.Order:
    return await queries.get_order(call.ctx, call.caller, order_id)


async def get_order_history(call: Call, *, order_id: UUID) -> models.OrderHistory:
    return await queries.get_order_history(call.ctx, call.caller, order_id)


async def cancel_order(
    call: WriteCall, *, order_id: UUID, body: models.OrderCancel
) -> models.Order:
    return await orders.cancel_order(call.uow, call.caller, order_id, body.reason)

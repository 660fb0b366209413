"""HTTP handlers of the inventory service: one coroutine per operationId of
specs/openapi/inventory.yaml, typed by the generated `InventoryHandlers` (service.py checks).

Each states its intent — one query or one command — and returns the response model. The kit
does what the spec declares: parameters and body checked and typed, permissions, the unit of
work of a write (committed after the handler), Idempotency-Key, status, ETag and Location.
"""

from __future__ import annotations

from uuid import UUID

from generated.inventory import models
from services.inventory import queries
from services.inventory.commands import catalogue, stock, warehouses
from services.platform import Call, Reply, WriteCall

# --- categories -----------------------------------------------------------------------------


async def list_categories(
    call: Call,
    *,
    parent_id: UUID | None = None,
    search: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.CategoryList:
    return await queries.list_categories(
        call.ctx, parent_id=parent_id, search=search, page=page, per_page=per_page
    )


async def create_category(call: WriteCall, *, body: models.CategoryCreate) -> models.Category:
    return await catalogue.create_category(call.uow, body)


async def get_category(call: Call, *, category_id: UUID) -> models.Category:
    return await queries.get_category(call.ctx, category_id)


async def update_category(
    call: WriteCall,
    *,
    category_id: UUID,
    body: models.CategoryUpdate,
    if_match: str | None = None,
) -> models.Category:
    return await catalogue.update_category(call.uow, category_id, body, if_match)


async def delete_category(call: WriteCall, *, category_id: UUID) -> None:
    await catalogue.delete_category(call.uow, category_id)


# --- products -------------------------------------------------------------------------------


async def list_products(
    call: Call,
    *,
    search: str | None = None,
    category_id: UUID | None = None,
    status: str | None = None,
    min_price: str | None = None,
    max_price: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.ProductList | Reply:
    return await queries.list_products(
        call.ctx,
        search=search,
        category_id=category_id,
        status=status,
        min_price=min_price,
        max_price=max_price,
        page=page,
        per_page=per_page,
    )


async def create_product(call: WriteCall, *, body: models.ProductCreate) -> models.Product:
    return await catalogue.create_product(call.uow, call.ctx.cache, body)


async def get_product(call: Call, *, product_id: UUID) -> models.Product:
    return await queries.get_product(call.ctx, product_id)


async def update_product(
    call: WriteCall,
    *,
    product_id: UUID,
    body: models.ProductUpdate,
    if_match: str | None = None,
) -> models.Product:
    return await catalogue.update_product(call.uow, call.ctx.cache, product_id, body, if_match)


async def delete_product(call: WriteCall, *, product_id: UUID) -> None:
    await catalogue.delete_product(call.uow, call.ctx.cache, product_id)


async def get_product_stock(call: Call, *, product_id: UUID) -> models.ProductStock:
    return await queries.get_product_stock(call.ctx, product_id)


# --- warehouses -----------------------------------------------------------------------------


async def list_warehouses(call: Call, *, page: int = 1, per_page: int = 15) -> models.WarehouseList:
    return await queries.list_warehouses(call.ctx, page=page, per_page=per_page)


async def create_warehouse(call: WriteCall, *, body: models.WarehouseCreate) -> models.Warehouse:
    return await warehouses.create_warehouse(call.uow, body)


async def get_warehouse(call: Call, *, warehouse_id: UUID) -> models.Warehouse:
    return await queries.get_warehouse(call.ctx, warehouse_id)


async def update_warehouse(
    call: WriteCall,
    *,
    warehouse_id: UUID,
    body: models.WarehouseUpdate,
    if_match: str | None = None,
) -> models.Warehouse:
    return await warehouses.update_warehouse(call.uow, warehouse_id, body, if_match)


async def get_warehouse_stock(
    call: Call, *, warehouse_id: UUID, page: int = 1, per_page: int = 15
) -> models.StockList:
    return await queries.get_warehouse_stock(call.ctx, warehouse_id, page=page, per_page=per_page)


# --- stock ----------------------------------------------------------------------------------


async def list_stock(
    call: Call,
    *,
    product_id: UUID | None = None,
    warehouse_id: UUID | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.StockList:
    return await queries.list_stock(
        call.ctx, product_id=product_id, warehouse_id=warehouse_id, page=page, per_page=per_page
    )


async def list_low_stock(
    call: Call, *, warehouse_id: UUID | None = None, page: int = 1, per_page: int = 15
) -> models.StockList:
    return await queries.list_low_stock(
        call.ctx, warehouse_id=warehouse_id, page=page, per_page=per_page
    )


async def list_movements(
    call: Call,
    *,
    product_id: UUID | None = None,
    warehouse_id: UUID | None = None,
    type_: str | None = None,
    reference: str | None = None,
    cursor: str | None = None,
    per_page: int = 15,
) -> models.MovementList:
    return await queries.list_movements(
        call.ctx,
        product_id=product_id,
        warehouse_id=warehouse_id,
        kind=type_,
        reference=reference,
        cursor=cursor,
        per_page=per_page,
    )


async def receive_stock(call: WriteCall, *, body: models.StockReceive) -> models.Movement:
    return await stock.receive_stock(call.uow, call.caller, body)


async def adjust_stock(call: WriteCall, *, body: models.StockAdjust) -> models.Movement:
    return await stock.adjust_stock(call.uow, call.caller, body)


async def get_order_reservation(call: Call, *, order_id: UUID) -> models.Reservation:
    return await queries.get_reservation(call.ctx, order_id)

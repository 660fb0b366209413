"""HTTP handlers of the inventory service: one coroutine per operationId of
specs/openapi/inventory.yaml.

Thin by design: connexion has validated the request against the spec; a handler reads the body,
calls one use case and turns the result into the generated response model through the kit's
`reply()`. Parameter names are the ones connexion passes (`pythonic_params=True`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from connexion.lifecycle import ConnexionResponse

from generated.inventory import models
from services.inventory import domain, usecases
from services.inventory.tables import Category, Movement, Product, Stock, Warehouse
from services.inventory.usecases import Caller, ReservationView
from services.platform import (
    Page,
    PageMeta,
    UnitOfWork,
    current_context,
    current_principal,
    etag,
    idempotent,
    reply,
)

# --- input ----------------------------------------------------------------------------------


def _caller() -> Caller:
    return Caller(principal=current_principal())


def _given(body: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The PATCH fields the body names (null included: it means "clear")."""
    return {field: body[field] for field in fields if field in body}


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)  # the spec's pattern checked the form


# --- output ---------------------------------------------------------------------------------


def _meta(meta: PageMeta) -> models.PaginationMeta:
    return models.PaginationMeta(**meta)


def _etag(version: int) -> dict[str, str]:
    return {"ETag": etag(version)}


def _category(category: Category) -> models.Category:
    return models.Category(
        id=category.id,
        name=category.name,
        slug=category.slug,
        parent_id=category.parent_id,
        description=category.description,
        created_at=category.created_at,
        updated_at=category.updated_at,
        version=category.version,
    )


def _category_reply(category: Category, status: int = 200) -> ConnexionResponse:
    headers = _etag(category.version)
    if status == 201:
        headers["Location"] = f"/api/v1/categories/{category.id}"
    return reply(_category(category), status, headers)


def _product_reply(product: Product, status: int = 200) -> ConnexionResponse:
    headers = _etag(product.version)
    if status == 201:
        headers["Location"] = f"/api/v1/products/{product.id}"
    return reply(models.Product.model_validate(usecases.product_state(product)), status, headers)


def _warehouse(warehouse: Warehouse) -> models.Warehouse:
    return models.Warehouse(
        id=warehouse.id,
        code=warehouse.code,
        name=warehouse.name,
        address=None if warehouse.address is None else models.Address(**warehouse.address),
        is_default=warehouse.is_default,
        created_at=warehouse.created_at,
        updated_at=warehouse.updated_at,
        version=warehouse.version,
    )


def _warehouse_reply(warehouse: Warehouse, status: int = 200) -> ConnexionResponse:
    headers = _etag(warehouse.version)
    if status == 201:
        headers["Location"] = f"/api/v1/warehouses/{warehouse.id}"
    return reply(_warehouse(warehouse), status, headers)


def _stock(row: Stock) -> models.Stock:
    return models.Stock(
        product_id=row.product_id,
        warehouse_id=row.warehouse_id,
        on_hand=row.on_hand,
        reserved=row.reserved,
        available=row.on_hand - row.reserved,
        min_quantity=row.min_quantity,
        updated_at=row.updated_at,
    )


def _stock_list(rows: Sequence[Stock], meta: PageMeta) -> ConnexionResponse:
    return reply(models.StockList(data=[_stock(row) for row in rows], meta=_meta(meta)))


def _movement(movement: Movement) -> models.Movement:
    assert movement.id is not None  # flushed
    return models.Movement(
        id=movement.id,
        product_id=movement.product_id,
        warehouse_id=movement.warehouse_id,
        type=models.MovementType(movement.type),
        quantity=movement.quantity,
        on_hand_before=movement.on_hand_before,
        on_hand_after=movement.on_hand_after,
        reserved_before=movement.reserved_before,
        reserved_after=movement.reserved_after,
        reason=movement.reason,
        reference=movement.reference,
        user_id=movement.user_id,
        created_at=movement.created_at,
    )


def _reservation(view: ReservationView) -> models.Reservation:
    reservation = view.reservation
    return models.Reservation(
        id=reservation.id,
        order_id=reservation.order_id,
        status=models.ReservationStatus(reservation.status),
        reason=None if reservation.reason is None else models.ReleaseReason(reservation.reason),
        expires_at=reservation.expires_at,
        items=[
            models.ReservationItem(
                product_id=item.product_id, warehouse_id=item.warehouse_id, quantity=item.quantity
            )
            for item in view.items
        ],
        created_at=reservation.created_at,
        updated_at=reservation.updated_at,
    )


# --- categories -----------------------------------------------------------------------------


async def list_categories(
    *,
    parent_id: str | None = None,
    search: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> ConnexionResponse:
    rows, meta = await usecases.list_categories(
        current_context(), page=Page.of(page, per_page), parent_id=parent_id, search=search
    )
    return reply(models.CategoryList(data=[_category(row) for row in rows], meta=_meta(meta)))


async def create_category(
    *, body: dict[str, Any], idempotency_key: str | None = None
) -> ConnexionResponse:
    async def run(uow: UnitOfWork) -> ConnexionResponse:
        category = await usecases.create_category(
            uow,
            name=body["name"],
            slug=body.get("slug"),
            parent_id=body.get("parent_id"),
            description=body.get("description"),
        )
        return _category_reply(category, 201)

    return await idempotent(
        current_context(),
        operation_id="create_category",
        key=idempotency_key,
        body=body,
        run=run,
    )


async def get_category(*, category_id: str) -> ConnexionResponse:
    return _category_reply(await usecases.get_category(current_context(), category_id))


async def update_category(
    *, category_id: str, body: dict[str, Any], if_match: str | None = None
) -> ConnexionResponse:
    category = await usecases.update_category(
        current_context(),
        category_id,
        if_match=if_match,
        changes=_given(body, ("name", "slug", "parent_id", "description")),
    )
    return _category_reply(category)


async def delete_category(*, category_id: str) -> ConnexionResponse:
    await usecases.delete_category(current_context(), category_id)
    return reply(None, 204)


# --- products -------------------------------------------------------------------------------


async def list_products(
    *,
    search: str | None = None,
    category_id: str | None = None,
    status: str | None = None,
    min_price: str | None = None,
    max_price: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> ConnexionResponse:
    listing = await usecases.list_products(
        current_context(),
        page=Page.of(page, per_page),
        search=search,
        category_id=category_id,
        status=status,
        min_price=_decimal(min_price),
        max_price=_decimal(max_price),
    )
    return reply(models.ProductList.model_validate(listing))


async def create_product(
    *, body: dict[str, Any], idempotency_key: str | None = None
) -> ConnexionResponse:
    ctx = current_context()

    async def run(uow: UnitOfWork) -> ConnexionResponse:
        product = await usecases.create_product(
            ctx,
            uow,
            sku=body["sku"],
            name=body["name"],
            description=body.get("description"),
            price=body["price"],
            currency=body.get("currency", domain.DEFAULT_CURRENCY),
            category_id=body.get("category_id"),
            status=body.get("status", domain.ProductStatus.ACTIVE.value),
        )
        return _product_reply(product, 201)

    return await idempotent(
        ctx, operation_id="create_product", key=idempotency_key, body=body, run=run
    )


async def get_product(*, product_id: str) -> ConnexionResponse:
    return _product_reply(await usecases.get_product(current_context(), product_id))


async def update_product(
    *, product_id: str, body: dict[str, Any], if_match: str | None = None
) -> ConnexionResponse:
    product = await usecases.update_product(
        current_context(),
        product_id,
        if_match=if_match,
        changes=_given(body, ("name", "description", "price", "currency", "category_id", "status")),
    )
    return _product_reply(product)


async def delete_product(*, product_id: str) -> ConnexionResponse:
    await usecases.delete_product(current_context(), product_id)
    return reply(None, 204)


async def get_product_stock(*, product_id: str) -> ConnexionResponse:
    view = await usecases.get_product_stock(current_context(), product_id)
    return reply(
        models.ProductStock(
            product_id=view.product_id,
            on_hand=view.on_hand,
            reserved=view.reserved,
            available=view.on_hand - view.reserved,
            warehouses=[_stock(row) for row in view.rows],
        )
    )


# --- warehouses -----------------------------------------------------------------------------


async def list_warehouses(*, page: int = 1, per_page: int = 15) -> ConnexionResponse:
    rows, meta = await usecases.list_warehouses(current_context(), Page.of(page, per_page))
    return reply(models.WarehouseList(data=[_warehouse(row) for row in rows], meta=_meta(meta)))


async def create_warehouse(
    *, body: dict[str, Any], idempotency_key: str | None = None
) -> ConnexionResponse:
    async def run(uow: UnitOfWork) -> ConnexionResponse:
        warehouse = await usecases.create_warehouse(
            uow, code=body["code"], name=body["name"], address=body.get("address")
        )
        return _warehouse_reply(warehouse, 201)

    return await idempotent(
        current_context(),
        operation_id="create_warehouse",
        key=idempotency_key,
        body=body,
        run=run,
    )


async def get_warehouse(*, warehouse_id: str) -> ConnexionResponse:
    return _warehouse_reply(await usecases.get_warehouse(current_context(), warehouse_id))


async def update_warehouse(
    *, warehouse_id: str, body: dict[str, Any], if_match: str | None = None
) -> ConnexionResponse:
    warehouse = await usecases.update_warehouse(
        current_context(),
        warehouse_id,
        if_match=if_match,
        changes=_given(body, ("name", "address")),
    )
    return _warehouse_reply(warehouse)


async def get_warehouse_stock(
    *, warehouse_id: str, page: int = 1, per_page: int = 15
) -> ConnexionResponse:
    rows, meta = await usecases.get_warehouse_stock(
        current_context(), warehouse_id, Page.of(page, per_page)
    )
    return _stock_list(rows, meta)


# --- stock ----------------------------------------------------------------------------------


async def list_stock(
    *,
    product_id: str | None = None,
    warehouse_id: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> ConnexionResponse:
    rows, meta = await usecases.list_stock(
        current_context(),
        page=Page.of(page, per_page),
        product_id=product_id,
        warehouse_id=warehouse_id,
    )
    return _stock_list(rows, meta)


async def list_low_stock(
    *, warehouse_id: str | None = None, page: int = 1, per_page: int = 15
) -> ConnexionResponse:
    rows, meta = await usecases.list_low_stock(
        current_context(), page=Page.of(page, per_page), warehouse_id=warehouse_id
    )
    return _stock_list(rows, meta)


async def list_movements(
    *,
    product_id: str | None = None,
    warehouse_id: str | None = None,
    type_: str | None = None,
    reference: str | None = None,
    cursor: str | None = None,
    per_page: int = 15,
) -> ConnexionResponse:
    page = await usecases.list_movements(
        current_context(),
        product_id=product_id,
        warehouse_id=warehouse_id,
        type=type_,
        reference=reference,
        cursor=cursor,
        per_page=per_page,
    )
    return reply(
        models.MovementList(
            data=[_movement(movement) for movement in page.rows],
            meta=models.CursorMeta(next_cursor=page.next_cursor, per_page=page.per_page),
        )
    )


async def receive_stock(
    *, body: dict[str, Any], idempotency_key: str | None = None
) -> ConnexionResponse:
    caller = _caller()

    async def run(uow: UnitOfWork) -> ConnexionResponse:
        movement = await usecases.receive_stock(
            uow,
            caller,
            product_id=body["product_id"],
            warehouse_id=body.get("warehouse_id"),
            quantity=body["quantity"],
            reason=body["reason"],
            reference=body.get("reference"),
        )
        return reply(_movement(movement), 201)

    return await idempotent(
        current_context(), operation_id="receive_stock", key=idempotency_key, body=body, run=run
    )


async def adjust_stock(
    *, body: dict[str, Any], idempotency_key: str | None = None
) -> ConnexionResponse:
    caller = _caller()

    async def run(uow: UnitOfWork) -> ConnexionResponse:
        movement = await usecases.adjust_stock(
            uow,
            caller,
            product_id=body["product_id"],
            warehouse_id=body.get("warehouse_id"),
            quantity=body["quantity"],
            reason=body["reason"],
            reference=body.get("reference"),
            min_quantity=body.get("min_quantity"),
        )
        return reply(_movement(movement), 201)

    return await idempotent(
        current_context(), operation_id="adjust_stock", key=idempotency_key, body=body, run=run
    )


async def get_order_reservation(*, order_id: str) -> ConnexionResponse:
    return reply(_reservation(await usecases.get_reservation(current_context(), order_id)))

"""The inventory service's reads: each takes the running `ServiceContext` and returns the
generated response model.

Table rows validate straight into the models (tables.py). The two hot lists — the stock list
and the public product list — are hand-written `Sql` run on the read pool, page and total in
one statement (`count(*) OVER ()`); the rest uses the ORM on a read session. The product list
is cached in Redis under a tag every product change retires (`invalidate_product_list`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Numeric, Uuid, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlmodel import col, select

from generated.inventory import models
from services.inventory import domain
from services.inventory.tables import Category, Movement, Product, Reservation, Stock, Warehouse
from services.platform import (
    JsonCache,
    Page,
    PageMeta,
    Reply,
    ServiceContext,
    Sql,
    UtcDateTime,
    keyset_of,
    newest_first,
    page_of,
    paginate,
    resource_not_found,
)

PRODUCTS_TAG: Final = "inventory-products"
PRODUCT_LIST_TTL_SECONDS: Final = 300


def like(text: str) -> str:
    """A case-insensitive LIKE pattern matching `text` anywhere (ESCAPE '\\')."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# --- paged hand-written statements ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Paged:
    """A page of `SELECT <columns> FROM <source> ORDER BY <order>` with its total in each row,
    and the COUNT asked only when a page past the end has no row to carry the total."""

    page: Sql
    count: Sql

    @classmethod
    def of(cls, columns: str, source: str, order: str, types: Mapping[str, Any]) -> _Paged:
        return cls(
            Sql(
                f"SELECT {columns}, count(*) OVER () AS total {source} ORDER BY {order}"
                " LIMIT :limit OFFSET :offset",
                types=types,
            ),
            Sql(f"SELECT count(*) AS total {source}"),
        )

    async def fetch(
        self, ctx: ServiceContext, page: Page, **params: Any
    ) -> tuple[list[dict[str, Any]], PageMeta]:
        rows = await ctx.database.fetch_all(
            self.page, limit=page.limit, offset=page.offset, **params
        )
        if rows:
            total = rows[0]["total"]
            for row in rows:
                del row["total"]
        elif page.offset:
            total = (await ctx.database.fetch_all(self.count, **params))[0]["total"]
        else:
            total = 0
        return rows, page.meta(int(total))


# --- categories -----------------------------------------------------------------------------


async def list_categories(
    ctx: ServiceContext, *, parent_id: UUID | None, search: str | None, page: int, per_page: int
) -> models.CategoryList:
    statement = select(Category)
    if parent_id is not None:
        statement = statement.where(col(Category.parent_id) == parent_id)
    if search is not None:
        statement = statement.where(func.lower(col(Category.name)).like(like(search), escape="\\"))
    statement = statement.order_by(col(Category.name), col(Category.id))
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.CategoryList, rows, meta)


async def get_category(ctx: ServiceContext, category_id: UUID) -> models.Category:
    async with ctx.database.read_session() as session:
        found = await session.get(Category, category_id)
    if found is None:
        raise resource_not_found("Category", category_id)
    return models.Category.model_validate(found, from_attributes=True)


# --- products -------------------------------------------------------------------------------


_PRODUCT_FILTERS: Final = {
    "search": "(lower(name) LIKE :search ESCAPE '\\' OR lower(sku) LIKE :search ESCAPE '\\')",
    "category_id": "category_id = :category_id",
    "status": "status = :status",
    "min_price": "price >= :min_price",
    "max_price": "price <= :max_price",
}
_PRODUCT_TYPES: Final = {
    "id": Uuid(),
    "category_id": Uuid(),
    "price": Numeric(12, 2),  # a Decimal, as psycopg reads it
    "created_at": UtcDateTime(),
    "updated_at": UtcDateTime(),
}


# Pages past this one are rarely read twice: not worth a key each.
MAX_CACHED_PAGE = 10


@cache
def _product_page(filters: tuple[str, ...]) -> _Paged:
    """The product page for one combination of filters (at most 32 statements, made once)."""
    where = " AND ".join(["deleted_at IS NULL", *(_PRODUCT_FILTERS[name] for name in filters)])
    return _Paged.of(
        "id, sku, name, description, price, currency, category_id, status, created_at,"
        " updated_at, version",
        f"FROM products WHERE {where}",
        "name, id",
        _PRODUCT_TYPES,
    )


async def list_products(
    ctx: ServiceContext,
    *,
    search: str | None,
    category_id: UUID | None,
    status: str | None,
    min_price: str | None,
    max_price: str | None,
    page: int,
    per_page: int,
) -> models.ProductList | Reply:
    """Live products by name, from the Redis cache when present (tagged: a product change is
    visible at once; otherwise an entry lives PRODUCT_LIST_TTL_SECONDS).

    A hit is the JSON of a list validated when it was stored, sent as it is."""
    paging = Page.of(page, per_page)
    low = None if min_price is None else Decimal(min_price)
    high = None if max_price is None else Decimal(max_price)
    query = {
        "page": paging.page,
        "per_page": paging.per_page,
        "search": search,
        "category_id": None if category_id is None else str(category_id),
        "status": status,
        "min_price": None if low is None else str(low),
        "max_price": None if high is None else str(high),
    }
    cached = ProductListCache(ctx.cache)
    key: str | None = None
    if _cacheable(search, category_id, min_price, max_price, paging.page):
        digest = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:32]
        key = await ctx.cache.tagged_key(PRODUCTS_TAG, "list", digest)
        hit = await cached.read(key)
        if hit is not None:
            return hit
    filters = {
        "search": None if search is None else like(search),
        "category_id": category_id,
        "status": status,
        "min_price": low,
        "max_price": high,
    }
    given = {name: value for name, value in filters.items() if value is not None}
    rows, meta = await _product_page(tuple(given)).fetch(ctx, paging, **given)
    for row in rows:
        row["price"] = domain.format_price(row["price"])
    listing = page_of(models.ProductList, rows, meta)
    if key is not None:
        await cached.write(key, listing)
    return listing


def _cacheable(
    search: str | None,
    category_id: UUID | None,
    min_price: str | None,
    max_price: str | None,
    page: int,
) -> bool:
    """Only the catalogue's browsing pages are cached: free text, ids and prices are chosen by
    the caller, so caching them would let anyone grow Redis by one key per request. What is
    left — status (3 values or none) by per_page (1-100) by the first MAX_CACHED_PAGE pages — is
    a bounded key space."""
    filtered = any(value is not None for value in (search, category_id, min_price, max_price))
    return not filtered and page <= MAX_CACHED_PAGE


class ProductListCache:
    """Pages of the product list, each the `model_dump_json()` of a validated
    `models.ProductList` (the bench twin reads the same entries). A hit is answered with the
    JSON as stored: not validated into the model again, nor rendered again."""

    def __init__(self, cache: JsonCache) -> None:
        self.redis = cache.redis  # the entries are JSON text already: no JsonCache encoding

    async def read(self, key: str) -> Reply | None:
        stored = await self.redis.get(key)  # text: the kit's clients decode responses
        if stored is None:
            return None
        body = stored if isinstance(stored, bytes) else stored.encode()
        return Reply(body)  # the kit still checks it against the schema when configured

    async def write(self, key: str, listing: models.ProductList) -> None:
        await self.redis.set(key, listing.model_dump_json(), px=PRODUCT_LIST_TTL_SECONDS * 1000)


async def invalidate_product_list(cache: JsonCache) -> None:
    """Retire every cached product list page; run after a product change commits
    (`uow.after_commit`). Should it fail, the pages expire after PRODUCT_LIST_TTL_SECONDS."""
    await cache.invalidate(PRODUCTS_TAG)


async def live_product(session: AsyncSession, product_id: UUID) -> Product:
    """A product that is not deleted (404 otherwise)."""
    statement = select(Product).where(
        col(Product.id) == product_id, col(Product.deleted_at).is_(None)
    )
    found = (await session.scalars(statement)).first()
    if found is None:
        raise resource_not_found("Product", product_id)
    return found


async def get_product(ctx: ServiceContext, product_id: UUID) -> models.Product:
    async with ctx.database.read_session() as session:
        product = await live_product(session, product_id)
    return models.Product.model_validate(product, from_attributes=True)


async def get_product_stock(ctx: ServiceContext, product_id: UUID) -> models.ProductStock:
    async with ctx.database.read_session() as session:
        product = await live_product(session, product_id)
        statement = (
            select(Stock)
            .where(col(Stock.product_id) == product.id)
            .order_by(col(Stock.warehouse_id))
        )
        rows = (await session.scalars(statement)).all()
    return models.ProductStock.model_validate(
        {
            "product_id": product.id,
            "on_hand": sum(row.on_hand for row in rows),
            "reserved": sum(row.reserved for row in rows),
            "available": sum(row.available for row in rows),
            "warehouses": rows,
        },
        from_attributes=True,
    )


# --- warehouses -----------------------------------------------------------------------------


async def list_warehouses(ctx: ServiceContext, *, page: int, per_page: int) -> models.WarehouseList:
    statement = select(Warehouse).order_by(col(Warehouse.code))
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.WarehouseList, rows, meta)


async def get_warehouse(ctx: ServiceContext, warehouse_id: UUID) -> models.Warehouse:
    async with ctx.database.read_session() as session:
        found = await session.get(Warehouse, warehouse_id)
    if found is None:
        raise resource_not_found("Warehouse", warehouse_id)
    return models.Warehouse.model_validate(found, from_attributes=True)


# --- stock ----------------------------------------------------------------------------------


def _live_stock() -> Any:
    """Stock rows of products that are not deleted."""
    return (
        select(Stock)
        .join(Product, col(Product.id) == col(Stock.product_id))
        .where(col(Product.deleted_at).is_(None))
    )


_STOCK_COLUMNS: Final = (
    "s.product_id, s.warehouse_id, s.on_hand, s.reserved, s.on_hand - s.reserved AS available,"
    " s.min_quantity, s.updated_at"
)
_STOCK_TYPES: Final = {"product_id": Uuid(), "warehouse_id": Uuid(), "updated_at": UtcDateTime()}
_LIVE_STOCK: Final = (
    "FROM stock s JOIN products p ON p.id = s.product_id WHERE p.deleted_at IS NULL"
)
_STOCK_PAGES: Final = {
    (by_product, by_warehouse): _Paged.of(
        _STOCK_COLUMNS,
        _LIVE_STOCK
        + (" AND s.product_id = :product_id" if by_product else "")
        + (" AND s.warehouse_id = :warehouse_id" if by_warehouse else ""),
        "s.product_id, s.warehouse_id",
        _STOCK_TYPES,
    )
    for by_product in (False, True)
    for by_warehouse in (False, True)
}


async def list_stock(
    ctx: ServiceContext,
    *,
    product_id: UUID | None,
    warehouse_id: UUID | None,
    page: int,
    per_page: int,
) -> models.StockList:
    """Stock of live products by product and warehouse (the hot read: hand-written SQL)."""
    given = {
        name: value
        for name, value in (("product_id", product_id), ("warehouse_id", warehouse_id))
        if value is not None
    }
    statement = _STOCK_PAGES[product_id is not None, warehouse_id is not None]
    rows, meta = await statement.fetch(ctx, Page.of(page, per_page), **given)
    return page_of(models.StockList, rows, meta)


async def get_warehouse_stock(
    ctx: ServiceContext, warehouse_id: UUID, *, page: int, per_page: int
) -> models.StockList:
    async with ctx.database.read_session() as session:
        if await session.get(Warehouse, warehouse_id) is None:
            raise resource_not_found("Warehouse", warehouse_id)
        statement = (
            _live_stock()
            .where(col(Stock.warehouse_id) == warehouse_id)
            .order_by(col(Stock.product_id))
        )
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.StockList, rows, meta)


async def list_low_stock(
    ctx: ServiceContext, *, warehouse_id: UUID | None, page: int, per_page: int
) -> models.StockList:
    """Rows whose available units are at or below their minimum, the lowest first."""
    statement = _live_stock().where(
        col(Stock.on_hand) - col(Stock.reserved) <= col(Stock.min_quantity)
    )
    if warehouse_id is not None:
        statement = statement.where(col(Stock.warehouse_id) == warehouse_id)
    statement = statement.order_by(
        col(Stock.on_hand) - col(Stock.reserved), col(Stock.product_id), col(Stock.warehouse_id)
    )
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.StockList, rows, meta)


async def list_movements(
    ctx: ServiceContext,
    *,
    product_id: UUID | None,
    warehouse_id: UUID | None,
    kind: str | None,
    reference: str | None,
    cursor: str | None,
    per_page: int,
) -> models.MovementList:
    """Newest first, keyset-paged on the movement id (stable while new movements arrive)."""
    statement = select(Movement)
    if product_id is not None:
        statement = statement.where(col(Movement.product_id) == product_id)
    if warehouse_id is not None:
        statement = statement.where(col(Movement.warehouse_id) == warehouse_id)
    if kind is not None:
        statement = statement.where(col(Movement.type) == kind)
    if reference is not None:
        statement = statement.where(col(Movement.reference) == reference)
    async with ctx.database.read_session() as session:
        found = await newest_first(session, statement, col(Movement.id), cursor, per_page)
    return keyset_of(models.MovementList, found)


# --- reservations ---------------------------------------------------------------------------


async def get_reservation(ctx: ServiceContext, order_id: UUID) -> models.Reservation:
    statement = (
        select(Reservation)
        .where(col(Reservation.order_id) == order_id)
        # SQLModel types the relationship as the list it holds, not as an attribute.
        .options(selectinload(Reservation.items))  # type: ignore[arg-type]
    )
    async with ctx.database.read_session() as session:
        found = (await session.scalars(statement)).first()
        if found is None:
            raise resource_not_found("Reservation of order", order_id)
        return models.Reservation.model_validate(found, from_attributes=True)

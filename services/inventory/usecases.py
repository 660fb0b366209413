"""The inventory service's use cases: one function per thing a caller (or an event) can do.

Each takes the running `ServiceContext` (or, for creating operations run under an
Idempotency-Key and for consumers, the `UnitOfWork` the kit opened) and plain arguments,
applies the rules of `domain.py`, writes the tables, the stock movements and the events in one
transaction (events go to the outbox through the generated publish functions) and returns rows
or plain views for the handlers. HTTP errors are raised as the kit's `Problem`; an event that
asks for an illegal transition raises the kit's `DeadLetter`.

Stock changes are conditional UPDATEs (`... WHERE on_hand - reserved >= :q`), so two
transactions racing for the last unit cannot both get it, whatever the isolation level; the
CHECK constraints on `stock` are the last guard.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Any, Final
from uuid import UUID, uuid4

from sqlalchemy import and_, func, or_, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    InventoryProductCreatedPayload,
    InventoryProductDeletedPayload,
    InventoryProductUpdatedPayload,
    InventoryStockConfirmedPayload,
    InventoryStockLowAlertPayload,
    InventoryStockReleasedPayload,
    InventoryStockReservationFailedPayload,
    InventoryStockReservedPayload,
    StockItem,
    StockShortage,
)
from services.inventory import domain
from services.inventory.domain import (
    Line,
    MovementType,
    ReleaseReason,
    ReservationStatus,
    StockLevel,
)
from services.inventory.tables import (
    Category,
    Movement,
    Product,
    Reservation,
    ReservationFailure,
    ReservationItem,
    Stock,
    Warehouse,
    metadata,
)
from services.platform import (
    DeadLetter,
    FieldError,
    KeysetPage,
    Page,
    PageMeta,
    Principal,
    Problem,
    ServiceContext,
    UnitOfWork,
    insert_ignoring_conflicts,
    newest_first,
    paginate,
    parse_uuid,
    require_if_match,
    rfc3339,
    utc_now,
)

log = logging.getLogger("services.inventory")

PRODUCTS_TAG: Final = "inventory-products"
PRODUCT_LIST_TTL_SECONDS: Final = 300
EXPIRY_BATCH: Final = 100
_STOCK = metadata.tables["stock"]


# --- who is calling -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal (None on public operations)."""

    principal: Principal | None = None

    @property
    def user_id(self) -> UUID | None:
        return self.principal.user_id if self.principal else None


# --- views returned to the handlers ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductStockView:
    product_id: UUID
    rows: Sequence[Stock]

    @property
    def on_hand(self) -> int:
        return sum(row.on_hand for row in self.rows)

    @property
    def reserved(self) -> int:
        return sum(row.reserved for row in self.rows)


@dataclass(frozen=True, slots=True)
class ReservationView:
    reservation: Reservation
    items: Sequence[ReservationItem]


class ReserveOutcome(StrEnum):
    RESERVED = "reserved"
    SKIPPED = "skipped"  # the order already has a reservation (or a cancellation tombstone)
    FAILED = "failed"  # not every item could be reserved; the failure is recorded instead


# --- small helpers --------------------------------------------------------------------------


def _unprocessable(detail: str, errors: Sequence[FieldError]) -> Problem:
    return Problem(422, detail=detail, errors=[e.as_dict() for e in errors])


def _check(errors: Sequence[FieldError]) -> None:
    if errors:
        raise _unprocessable("The request breaks the rules; see errors.", errors)


def _not_found(kind: str, identifier: object) -> Problem:
    return Problem(404, detail=f"{kind} {identifier} not found.")


async def _flush_unique(session: AsyncSession, conflict: Problem) -> None:
    """Flush; a unique violation (a concurrent insert of the same key) becomes the conflict."""
    try:
        await session.flush()
    except IntegrityError:
        raise conflict from None


def _like(text_value: str) -> str:
    escaped = text_value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# --- categories -----------------------------------------------------------------------------


async def list_categories(
    ctx: ServiceContext, *, page: Page, parent_id: str | None, search: str | None
) -> tuple[Sequence[Category], PageMeta]:
    statement = select(Category)
    if parent_id is not None:
        statement = statement.where(col(Category.parent_id) == parse_uuid(parent_id))
    if search is not None:
        statement = statement.where(func.lower(col(Category.name)).like(_like(search), escape="\\"))
    statement = statement.order_by(col(Category.name), col(Category.id))
    async with ctx.database.read_session() as session:
        return await paginate(session, statement, page)


async def _category(
    session: AsyncSession, category_id: UUID | str, *, lock: bool = False
) -> Category:
    identifier = parse_uuid(category_id)
    statement = select(Category).where(col(Category.id) == identifier)
    if lock:
        statement = statement.with_for_update()
    found = (await session.scalars(statement)).first() if identifier else None
    if found is None:
        raise _not_found("Category", category_id)
    return found


async def _referenced_category(
    session: AsyncSession, category_id: str | UUID | None, field: str
) -> UUID | None:
    """The id of an existing category named in a body (422 when there is none)."""
    if category_id is None:
        return None
    identifier = parse_uuid(category_id)
    found = await session.get(Category, identifier) if identifier else None
    if found is None:
        raise _unprocessable(
            f"Category {category_id} does not exist.", [FieldError(field, "unknown category")]
        )
    return found.id


def _slug_taken(slug: str) -> Problem:
    return Problem(409, detail=f"A category with slug {slug!r} already exists.")


async def _lock_hierarchy(uow: UnitOfWork) -> None:
    """Serialise changes of the category tree: two concurrent re-parentings could each pass
    the cycle check and close a loop together. (SQLite runs one writer at a time anyway.)"""
    if uow.dialect == "postgresql":
        await uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('inventory.categories'))")
        )


async def create_category(
    uow: UnitOfWork,
    *,
    name: str,
    slug: str | None,
    parent_id: str | None,
    description: str | None,
) -> Category:
    session = uow.session
    slug = slug if slug is not None else domain.slugify(name)
    _check(domain.slug_errors(slug))
    parent = await _referenced_category(session, parent_id, "parent_id")
    now = utc_now()
    category = Category(
        name=name,
        slug=slug,
        parent_id=parent,
        description=description,
        created_at=now,
        updated_at=now,
    )
    session.add(category)
    await _flush_unique(session, _slug_taken(slug))
    return category


async def get_category(ctx: ServiceContext, category_id: str) -> Category:
    async with ctx.database.read_session() as session:
        return await _category(session, category_id)


async def update_category(
    ctx: ServiceContext, category_id: str, *, if_match: str | None, changes: Mapping[str, Any]
) -> Category:
    """`changes` holds the fields the body gave (a null parent_id makes a root category)."""
    async with ctx.unit_of_work() as uow:
        session = uow.session
        if "parent_id" in changes:
            await _lock_hierarchy(uow)
        category = await _category(session, category_id, lock=True)
        require_if_match(if_match, category.version)
        changed = False
        if "slug" in changes and changes["slug"] != category.slug:
            _check(domain.slug_errors(changes["slug"]))
            category.slug = changes["slug"]
            changed = True
        if "parent_id" in changes:
            parent = await _referenced_category(session, changes["parent_id"], "parent_id")
            if parent != category.parent_id:
                parents: dict[UUID, UUID | None] = dict(
                    (await session.execute(select(Category.id, Category.parent_id))).all()
                )
                if domain.creates_cycle(category.id, parent, parents):
                    raise _unprocessable(
                        "A category cannot be placed below itself or its descendants.",
                        [FieldError("parent_id", "would create a cycle in the hierarchy")],
                    )
                category.parent_id = parent
                changed = True
        for field in ("name", "description"):
            if field in changes and changes[field] != getattr(category, field):
                setattr(category, field, changes[field])
                changed = True
        if changed:
            category.version += 1
            category.updated_at = utc_now()
            await _flush_unique(session, _slug_taken(category.slug))
        await uow.commit()
    return category


async def delete_category(ctx: ServiceContext, category_id: str) -> None:
    async with ctx.unit_of_work() as uow:
        session = uow.session
        await _lock_hierarchy(uow)
        category = await _category(session, category_id, lock=True)
        children = await session.scalar(
            select(func.count()).select_from(Category).where(col(Category.parent_id) == category.id)
        )
        if children:
            raise Problem(409, detail=f"Category {category.id} has {children} sub-categories.")
        products = await session.scalar(
            select(func.count())
            .select_from(Product)
            .where(col(Product.category_id) == category.id, col(Product.deleted_at).is_(None))
        )
        if products:
            raise Problem(409, detail=f"Category {category.id} has {products} products.")
        await session.delete(category)
        await uow.commit()


# --- products -------------------------------------------------------------------------------


def product_state(product: Product) -> dict[str, Any]:
    """The Product schema as JSON data (HTTP responses and the cached list share it)."""
    return {
        "id": str(product.id),
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "price": domain.format_price(product.price),
        "currency": product.currency,
        "category_id": str(product.category_id) if product.category_id else None,
        "status": product.status,
        "created_at": rfc3339(product.created_at),
        "updated_at": rfc3339(product.updated_at),
        "version": product.version,
    }


def _product_event_fields(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "price": domain.format_price(product.price),
        "currency": product.currency,
        "category_id": product.category_id,
        "status": product.status,
        "version": product.version,
        "occurred_at": utc_now(),
    }


async def invalidate_product_list(ctx: ServiceContext) -> None:
    """Retire every cached product list page; run after a product change commits
    (`uow.after_commit`). Should it fail, the pages expire after PRODUCT_LIST_TTL_SECONDS."""
    await ctx.cache.invalidate(PRODUCTS_TAG)


async def list_products(
    ctx: ServiceContext,
    *,
    page: Page,
    search: str | None,
    category_id: str | None,
    status: str | None,
    min_price: Decimal | None,
    max_price: Decimal | None,
) -> dict[str, Any]:
    """`{"data": [Product...], "meta": {...}}` as JSON data, from the Redis cache when present.

    Entries live under a tag that every product change bumps, so a change is visible at once.
    """
    query = {
        "page": page.page,
        "per_page": page.per_page,
        "search": search,
        "category_id": category_id,
        "status": status,
        "min_price": None if min_price is None else str(min_price),
        "max_price": None if max_price is None else str(max_price),
    }
    digest = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:32]
    cache = ctx.cache
    key = await cache.tagged_key(PRODUCTS_TAG, "list", digest)

    async def load() -> dict[str, Any]:
        statement = select(Product).where(col(Product.deleted_at).is_(None))
        if search is not None:
            pattern = _like(search)
            statement = statement.where(
                or_(
                    func.lower(col(Product.name)).like(pattern, escape="\\"),
                    func.lower(col(Product.sku)).like(pattern, escape="\\"),
                )
            )
        if category_id is not None:
            statement = statement.where(col(Product.category_id) == parse_uuid(category_id))
        if status is not None:
            statement = statement.where(col(Product.status) == status)
        if min_price is not None:
            statement = statement.where(col(Product.price) >= min_price)
        if max_price is not None:
            statement = statement.where(col(Product.price) <= max_price)
        statement = statement.order_by(col(Product.name), col(Product.id))
        async with ctx.database.read_session() as session:
            rows, meta = await paginate(session, statement, page)
        return {"data": [product_state(row) for row in rows], "meta": dict(meta)}

    result: dict[str, Any] = await cache.get_or_set(key, PRODUCT_LIST_TTL_SECONDS, load)
    return result


async def _product(session: AsyncSession, product_id: UUID | str, *, lock: bool = False) -> Product:
    """A product that is not deleted (404 otherwise)."""
    identifier = parse_uuid(product_id)
    statement = select(Product).where(
        col(Product.id) == identifier, col(Product.deleted_at).is_(None)
    )
    if lock:
        statement = statement.with_for_update()
    found = (await session.scalars(statement)).first() if identifier else None
    if found is None:
        raise _not_found("Product", product_id)
    return found


def _sku_taken(sku: str) -> Problem:
    return Problem(409, detail=f"A product with SKU {sku} already exists.")


def _price(text_value: str) -> Decimal:
    value = domain.parse_price(text_value)
    if value is None:
        _check(domain.price_errors(text_value))
    assert value is not None  # _check raised otherwise
    return value


async def create_product(
    ctx: ServiceContext,
    uow: UnitOfWork,
    *,
    sku: str,
    name: str,
    description: str | None,
    price: str,
    currency: str,
    category_id: str | None,
    status: str,
) -> Product:
    session = uow.session
    _check(domain.sku_errors(sku) + domain.price_errors(price))
    category = await _referenced_category(session, category_id, "category_id")
    if (await session.scalars(select(Product.id).where(col(Product.sku) == sku))).first():
        raise _sku_taken(sku)
    now = utc_now()
    product = Product(
        sku=sku,
        name=name,
        description=description,
        price=_price(price),
        currency=currency,
        category_id=category,
        status=status,
        created_at=now,
        updated_at=now,
    )
    session.add(product)
    await _flush_unique(session, _sku_taken(sku))
    events.publish_inventory_product_created(
        uow, InventoryProductCreatedPayload(**_product_event_fields(product))
    )
    # After the commit: a list cached before it must not be served any more.
    uow.after_commit(partial(invalidate_product_list, ctx))
    return product


async def get_product(ctx: ServiceContext, product_id: str) -> Product:
    async with ctx.database.read_session() as session:
        return await _product(session, product_id)


async def update_product(
    ctx: ServiceContext, product_id: str, *, if_match: str | None, changes: Mapping[str, Any]
) -> Product:
    """`changes` holds the fields the body gave; the SKU is not among them (immutable)."""
    async with ctx.unit_of_work() as uow:
        session = uow.session
        product = await _product(session, product_id, lock=True)
        require_if_match(if_match, product.version)
        changed = False
        if "price" in changes:
            price = _price(changes["price"])
            if price != product.price:
                product.price = price
                changed = True
        if "category_id" in changes:
            category = await _referenced_category(session, changes["category_id"], "category_id")
            if category != product.category_id:
                product.category_id = category
                changed = True
        for field in ("name", "description", "currency", "status"):
            if field in changes and changes[field] != getattr(product, field):
                setattr(product, field, changes[field])
                changed = True
        if changed:
            product.version += 1
            product.updated_at = utc_now()
            await session.flush()
            events.publish_inventory_product_updated(
                uow, InventoryProductUpdatedPayload(**_product_event_fields(product))
            )
            uow.after_commit(partial(invalidate_product_list, ctx))
        await uow.commit()
    return product


async def delete_product(ctx: ServiceContext, product_id: str) -> None:
    async with ctx.unit_of_work() as uow:
        session = uow.session
        product = await _product(session, product_id, lock=True)
        # Stock rows are locked too: a receipt cannot slip in between the check and the delete.
        rows = (
            await session.scalars(
                select(Stock).where(col(Stock.product_id) == product.id).with_for_update()
            )
        ).all()
        on_hand = sum(row.on_hand for row in rows)
        if on_hand:
            raise Problem(
                409,
                detail=f"Product {product.id} has {on_hand} units on hand; it cannot be deleted.",
            )
        now = utc_now()
        product.deleted_at = now
        product.updated_at = now
        product.version += 1
        await session.flush()
        events.publish_inventory_product_deleted(
            uow, InventoryProductDeletedPayload(**_product_event_fields(product))
        )
        uow.after_commit(partial(invalidate_product_list, ctx))
        await uow.commit()


async def get_product_stock(ctx: ServiceContext, product_id: str) -> ProductStockView:
    async with ctx.database.read_session() as session:
        product = await _product(session, product_id)
        rows = (
            await session.scalars(
                select(Stock)
                .where(col(Stock.product_id) == product.id)
                .order_by(col(Stock.warehouse_id))
            )
        ).all()
    return ProductStockView(product.id, rows)


# --- warehouses -----------------------------------------------------------------------------


async def seed_default_warehouse(ctx: ServiceContext) -> None:
    """Make the default warehouse exist (start-up hook; idempotent and replica-safe: the
    unique code makes a concurrent seed a no-op)."""
    now = utc_now()
    async with ctx.database.session() as session:
        await session.execute(
            insert_ignoring_conflicts(
                ctx.database.dialect,
                metadata.tables["warehouses"],
                {
                    "id": uuid4(),
                    "code": domain.DEFAULT_WAREHOUSE_CODE,
                    "name": domain.DEFAULT_WAREHOUSE_NAME,
                    "address": None,
                    "is_default": True,
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                },
            )
        )
        await session.commit()


async def _default_warehouse_id(session: AsyncSession) -> UUID:
    found = (
        await session.scalars(
            select(Warehouse.id).where(col(Warehouse.code) == domain.DEFAULT_WAREHOUSE_CODE)
        )
    ).first()
    if found is None:
        raise RuntimeError("the default warehouse is missing (the start-up hook seeds it)")
    return found


async def _warehouse(
    session: AsyncSession, warehouse_id: UUID | str, *, lock: bool = False
) -> Warehouse:
    identifier = parse_uuid(warehouse_id)
    statement = select(Warehouse).where(col(Warehouse.id) == identifier)
    if lock:
        statement = statement.with_for_update()
    found = (await session.scalars(statement)).first() if identifier else None
    if found is None:
        raise _not_found("Warehouse", warehouse_id)
    return found


async def list_warehouses(ctx: ServiceContext, page: Page) -> tuple[Sequence[Warehouse], PageMeta]:
    statement = select(Warehouse).order_by(col(Warehouse.code))
    async with ctx.database.read_session() as session:
        return await paginate(session, statement, page)


def _code_taken(code: str) -> Problem:
    return Problem(409, detail=f"A warehouse with code {code} already exists.")


async def create_warehouse(
    uow: UnitOfWork, *, code: str, name: str, address: dict[str, Any] | None
) -> Warehouse:
    session = uow.session
    _check(domain.warehouse_code_errors(code))
    if (await session.scalars(select(Warehouse.id).where(col(Warehouse.code) == code))).first():
        raise _code_taken(code)
    now = utc_now()
    warehouse = Warehouse(code=code, name=name, address=address, created_at=now, updated_at=now)
    session.add(warehouse)
    await _flush_unique(session, _code_taken(code))
    return warehouse


async def get_warehouse(ctx: ServiceContext, warehouse_id: str) -> Warehouse:
    async with ctx.database.read_session() as session:
        return await _warehouse(session, warehouse_id)


async def update_warehouse(
    ctx: ServiceContext, warehouse_id: str, *, if_match: str | None, changes: Mapping[str, Any]
) -> Warehouse:
    async with ctx.unit_of_work() as uow:
        warehouse = await _warehouse(uow.session, warehouse_id, lock=True)
        require_if_match(if_match, warehouse.version)
        changed = False
        for field in ("name", "address"):
            if field in changes and changes[field] != getattr(warehouse, field):
                setattr(warehouse, field, changes[field])
                changed = True
        if changed:
            warehouse.version += 1
            warehouse.updated_at = utc_now()
        await uow.commit()
    return warehouse


# --- stock ----------------------------------------------------------------------------------


def _live_stock() -> Any:
    """Stock rows of products that are not deleted."""
    return (
        select(Stock)
        .join(Product, col(Product.id) == col(Stock.product_id))
        .where(col(Product.deleted_at).is_(None))
    )


async def get_warehouse_stock(
    ctx: ServiceContext, warehouse_id: str, page: Page
) -> tuple[Sequence[Stock], PageMeta]:
    async with ctx.database.read_session() as session:
        warehouse = await _warehouse(session, warehouse_id)
        statement = (
            _live_stock()
            .where(col(Stock.warehouse_id) == warehouse.id)
            .order_by(col(Stock.product_id))
        )
        return await paginate(session, statement, page)


async def list_stock(
    ctx: ServiceContext, *, page: Page, product_id: str | None, warehouse_id: str | None
) -> tuple[Sequence[Stock], PageMeta]:
    statement = _live_stock()
    if product_id is not None:
        statement = statement.where(col(Stock.product_id) == parse_uuid(product_id))
    if warehouse_id is not None:
        statement = statement.where(col(Stock.warehouse_id) == parse_uuid(warehouse_id))
    statement = statement.order_by(col(Stock.product_id), col(Stock.warehouse_id))
    async with ctx.database.read_session() as session:
        return await paginate(session, statement, page)


async def list_low_stock(
    ctx: ServiceContext, *, page: Page, warehouse_id: str | None
) -> tuple[Sequence[Stock], PageMeta]:
    statement = _live_stock().where(
        col(Stock.on_hand) - col(Stock.reserved) <= col(Stock.min_quantity)
    )
    if warehouse_id is not None:
        statement = statement.where(col(Stock.warehouse_id) == parse_uuid(warehouse_id))
    statement = statement.order_by(
        col(Stock.on_hand) - col(Stock.reserved), col(Stock.product_id), col(Stock.warehouse_id)
    )
    async with ctx.database.read_session() as session:
        return await paginate(session, statement, page)


async def list_movements(
    ctx: ServiceContext,
    *,
    product_id: str | None,
    warehouse_id: str | None,
    type: str | None,  # the query parameter's name
    reference: str | None,
    cursor: str | None,
    per_page: int,
) -> KeysetPage[Movement]:
    """Newest first, keyset-paged on the movement id (stable while new movements arrive)."""
    statement = select(Movement)
    if product_id is not None:
        statement = statement.where(col(Movement.product_id) == parse_uuid(product_id))
    if warehouse_id is not None:
        statement = statement.where(col(Movement.warehouse_id) == parse_uuid(warehouse_id))
    if type is not None:
        statement = statement.where(col(Movement.type) == type)
    if reference is not None:
        statement = statement.where(col(Movement.reference) == reference)
    async with ctx.database.read_session() as session:
        return await newest_first(session, statement, col(Movement.id), cursor, per_page)


async def _target(
    session: AsyncSession, product_id: str, warehouse_id: str | None
) -> tuple[Product, UUID]:
    """The product and warehouse a stock request names (422: they are body fields)."""
    identifier = parse_uuid(product_id)
    product = (
        (
            await session.scalars(
                select(Product).where(
                    col(Product.id) == identifier, col(Product.deleted_at).is_(None)
                )
            )
        ).first()
        if identifier
        else None
    )
    if product is None:
        raise _unprocessable(
            f"Product {product_id} does not exist.", [FieldError("product_id", "unknown product")]
        )
    if warehouse_id is None:
        return product, await _default_warehouse_id(session)
    warehouse = (
        await session.get(Warehouse, parse_uuid(warehouse_id)) if parse_uuid(warehouse_id) else None
    )
    if warehouse is None:
        raise _unprocessable(
            f"Warehouse {warehouse_id} does not exist.",
            [FieldError("warehouse_id", "unknown warehouse")],
        )
    return product, warehouse.id


async def _locked_stock(
    session: AsyncSession, dialect: str, product_id: UUID, warehouse_id: UUID
) -> Stock:
    """The stock row, created on first use (min_quantity 10), with its row lock held."""
    await session.execute(
        insert_ignoring_conflicts(
            dialect,
            _STOCK,
            {
                "product_id": product_id,
                "warehouse_id": warehouse_id,
                "on_hand": 0,
                "reserved": 0,
                "min_quantity": domain.DEFAULT_MIN_QUANTITY,
                "updated_at": utc_now(),
            },
        )
    )
    statement = (
        select(Stock)
        .where(col(Stock.product_id) == product_id, col(Stock.warehouse_id) == warehouse_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).one()


def _movement(
    *,
    product_id: UUID,
    warehouse_id: UUID,
    kind: MovementType,
    quantity: int,
    before: StockLevel,
    after: StockLevel,
    reason: str,
    reference: str | None,
    user_id: UUID | None,
    now: datetime,
) -> Movement:
    return Movement(
        product_id=product_id,
        warehouse_id=warehouse_id,
        type=kind.value,
        quantity=quantity,
        on_hand_before=before.on_hand,
        on_hand_after=after.on_hand,
        reserved_before=before.reserved,
        reserved_after=after.reserved,
        reason=reason,
        reference=reference,
        user_id=user_id,
        created_at=now,
    )


async def _change_stock(
    uow: UnitOfWork,
    caller: Caller,
    *,
    product_id: str,
    warehouse_id: str | None,
    quantity: int,
    reason: str,
    reference: str | None,
    kind: MovementType,
    min_quantity: int | None = None,
) -> Movement:
    _check(domain.reason_errors(reason))
    session = uow.session
    product, warehouse = await _target(session, product_id, warehouse_id)
    stock = await _locked_stock(session, uow.dialect, product.id, warehouse)
    before = StockLevel(stock.on_hand, stock.reserved)
    if kind is MovementType.IN:
        after = domain.receive(before, quantity)
    else:
        after = domain.adjust(before, quantity)
    if isinstance(after, FieldError):
        raise _unprocessable(f"The stock cannot change: {after.message}.", [after])
    now = utc_now()
    was_low = domain.is_low(before.available, stock.min_quantity)
    stock.on_hand = after.on_hand
    if min_quantity is not None:
        stock.min_quantity = min_quantity
    stock.updated_at = now
    movement = _movement(
        product_id=product.id,
        warehouse_id=warehouse,
        kind=kind,
        quantity=quantity,
        before=before,
        after=after,
        reason=reason,
        reference=reference,
        user_id=caller.user_id,
        now=now,
    )
    session.add(movement)
    await session.flush()
    # Alert when a manual change brings the product down to its minimum (not on every change
    # while it stays low; confirmations alert each time, as the saga has no other signal).
    if quantity < 0 and not was_low and domain.is_low(after.available, stock.min_quantity):
        _emit_low_alert(uow, product, warehouse, after.available, stock.min_quantity)
    return movement


async def receive_stock(
    uow: UnitOfWork,
    caller: Caller,
    *,
    product_id: str,
    warehouse_id: str | None,
    quantity: int,
    reason: str,
    reference: str | None,
) -> Movement:
    return await _change_stock(
        uow,
        caller,
        product_id=product_id,
        warehouse_id=warehouse_id,
        quantity=quantity,
        reason=reason,
        reference=reference,
        kind=MovementType.IN,
    )


async def adjust_stock(
    uow: UnitOfWork,
    caller: Caller,
    *,
    product_id: str,
    warehouse_id: str | None,
    quantity: int,
    reason: str,
    reference: str | None,
    min_quantity: int | None,
) -> Movement:
    return await _change_stock(
        uow,
        caller,
        product_id=product_id,
        warehouse_id=warehouse_id,
        quantity=quantity,
        reason=reason,
        reference=reference,
        kind=MovementType.ADJUSTMENT,
        min_quantity=min_quantity,
    )


def _emit_low_alert(
    uow: UnitOfWork, product: Product, warehouse_id: UUID, available: int, min_quantity: int
) -> None:
    events.publish_inventory_stock_low_alert(
        uow,
        InventoryStockLowAlertPayload(
            product_id=product.id,
            sku=product.sku,
            warehouse_id=warehouse_id,
            available=available,
            min_quantity=min_quantity,
        ),
    )


# --- reservations (the order saga) ----------------------------------------------------------


async def get_reservation(ctx: ServiceContext, order_id: str) -> ReservationView:
    async with ctx.database.read_session() as session:
        identifier = parse_uuid(order_id)
        reservation = (
            (
                await session.scalars(
                    select(Reservation).where(col(Reservation.order_id) == identifier)
                )
            ).first()
            if identifier
            else None
        )
        if reservation is None:
            raise _not_found("Reservation of order", order_id)
        return ReservationView(reservation, await _items(session, reservation.id))


async def _items(session: AsyncSession, reservation_id: UUID) -> list[ReservationItem]:
    statement = (
        select(ReservationItem)
        .where(col(ReservationItem.reservation_id) == reservation_id)
        .order_by(col(ReservationItem.product_id), col(ReservationItem.warehouse_id))
    )
    return list((await session.scalars(statement)).all())


async def _reservation_of(
    session: AsyncSession, order_id: UUID, *, lock: bool = False
) -> Reservation | None:
    statement = select(Reservation).where(col(Reservation.order_id) == order_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.scalars(statement)).first()


async def _live_product_ids(session: AsyncSession, ids: Iterable[UUID]) -> set[UUID]:
    statement = select(Product.id).where(
        col(Product.id).in_(list(ids)), col(Product.deleted_at).is_(None)
    )
    return set((await session.scalars(statement)).all())


def _stock_items(items: Iterable[ReservationItem]) -> list[StockItem]:
    return [
        StockItem(product_id=i.product_id, warehouse_id=i.warehouse_id, quantity=i.quantity)
        for i in items
    ]


async def reserve_order(uow: UnitOfWork, order_id: UUID, lines: Iterable[Line]) -> ReserveOutcome:
    """Reserve every line of an order in the default warehouse, or nothing.

    The attempt runs in a savepoint of the caller's unit of work (a consumer's, holding the
    inbox row the kit wrote). When a product is unknown or short, the savepoint is rolled back
    (every unit the attempt took is back) and the failure is recorded in the same transaction
    (`inventory.stock.reservation_failed`): FAILED. The caller commits either way.
    """
    session = uow.session
    existing = await _reservation_of(session, order_id)
    if existing is not None:
        if (
            existing.status == ReservationStatus.RELEASED
            and existing.reason == ReleaseReason.CANCELLED
        ):
            log.info("order %s was cancelled before it was created: nothing reserved", order_id)
        else:
            log.info(
                "order %s already has a reservation (%s): nothing to do", order_id, existing.status
            )
        return ReserveOutcome.SKIPPED
    merged = domain.merge_lines(lines)
    async with uow.savepoint() as attempt:
        reserved = await _take_stock(uow, order_id, merged)
        if not reserved:
            await attempt.rollback()
    if reserved:
        return ReserveOutcome.RESERVED
    await _record_reservation_failure(uow, order_id, merged)
    return ReserveOutcome.FAILED


async def _take_stock(uow: UnitOfWork, order_id: UUID, merged: Sequence[Line]) -> bool:
    """Reserve every (merged) line and say so (`stock.reserved`); False as soon as one cannot
    be taken, with the lines before it taken: the caller rolls its savepoint back."""
    session = uow.session
    known = await _live_product_ids(session, (line.product_id for line in merged))
    if len(known) < len(merged):
        return False
    warehouse = await _default_warehouse_id(session)
    now = utc_now()
    movements: list[Movement] = []
    for line in merged:  # sorted by product id: row locks are always taken in the same order
        taken = (
            await session.execute(
                update(_STOCK)
                .where(
                    _STOCK.c.product_id == line.product_id,
                    _STOCK.c.warehouse_id == warehouse,
                    _STOCK.c.on_hand - _STOCK.c.reserved >= line.quantity,
                )
                .values(reserved=_STOCK.c.reserved + line.quantity, updated_at=now)
                .returning(_STOCK.c.on_hand, _STOCK.c.reserved)
            )
        ).first()
        if taken is None:
            return False
        on_hand, reserved = int(taken[0]), int(taken[1])
        movements.append(
            _movement(
                product_id=line.product_id,
                warehouse_id=warehouse,
                kind=MovementType.RESERVATION,
                quantity=line.quantity,
                before=StockLevel(on_hand, reserved - line.quantity),
                after=StockLevel(on_hand, reserved),
                reason=f"Reservation for order {order_id}",
                reference=str(order_id),
                user_id=None,
                now=now,
            )
        )
    reservation = Reservation(
        order_id=order_id,
        status=ReservationStatus.PENDING.value,
        warehouse_id=warehouse,
        expires_at=domain.expires_at(now),
        created_at=now,
        updated_at=now,
    )
    session.add(reservation)
    # A concurrent duplicate of this order fails here (unique order_id) and is retried.
    await session.flush()
    items = [
        ReservationItem(
            reservation_id=reservation.id,
            product_id=line.product_id,
            warehouse_id=warehouse,
            quantity=line.quantity,
        )
        for line in merged
    ]
    session.add_all([*items, *movements])
    await session.flush()
    events.publish_inventory_stock_reserved(
        uow,
        InventoryStockReservedPayload(
            order_id=order_id,
            reservation_id=reservation.id,
            items=_stock_items(items),
            expires_at=reservation.expires_at,
        ),
    )
    return True


async def _record_reservation_failure(
    uow: UnitOfWork, order_id: UUID, merged: Sequence[Line]
) -> None:
    """Record why an order could not be reserved and tell the saga (reservation_failed)."""
    session = uow.session
    if await _reservation_of(session, order_id) is not None:
        # A concurrent delivery of the order reserved (or a cancellation tombstoned) it.
        log.info("order %s got a reservation meanwhile: no failure to report", order_id)
        return
    known = await _live_product_ids(session, (line.product_id for line in merged))
    warehouse = await _default_warehouse_id(session)
    available: dict[UUID, int] = {}
    if known:
        rows = await session.execute(
            select(Stock.product_id, col(Stock.on_hand) - col(Stock.reserved)).where(
                col(Stock.product_id).in_(list(known)), col(Stock.warehouse_id) == warehouse
            )
        )
        available = {product_id: int(units) for product_id, units in rows.all()}
    report = domain.shortages(merged, available)
    reason = domain.failure_reason(
        line.product_id for line in merged if line.product_id not in known
    )
    items = [
        StockShortage(product_id=s.product_id, requested=s.requested, available=s.available)
        for s in report
    ]
    session.add(
        ReservationFailure(
            order_id=order_id,
            reason=reason,
            items=[item.model_dump(mode="json") for item in items],
            created_at=utc_now(),
        )
    )
    await session.flush()
    log.info("order %s could not be reserved: %s", order_id, reason)
    events.publish_inventory_stock_reservation_failed(
        uow, InventoryStockReservationFailedPayload(order_id=order_id, reason=reason, items=items)
    )


async def _release(uow: UnitOfWork, reservation: Reservation, reason: ReleaseReason) -> None:
    """pending → released: every reserved unit back to available, one movement each."""
    session = uow.session
    items = await _items(session, reservation.id)
    now = utc_now()
    for item in items:
        row = (
            await session.execute(
                update(_STOCK)
                .where(
                    _STOCK.c.product_id == item.product_id,
                    _STOCK.c.warehouse_id == item.warehouse_id,
                    _STOCK.c.reserved >= item.quantity,
                )
                .values(reserved=_STOCK.c.reserved - item.quantity, updated_at=now)
                .returning(_STOCK.c.on_hand, _STOCK.c.reserved)
            )
        ).first()
        if row is None:
            raise RuntimeError(
                f"stock of {item.product_id} holds fewer reserved units than reservation "
                f"{reservation.id} took"
            )
        on_hand, reserved = int(row[0]), int(row[1])
        session.add(
            _movement(
                product_id=item.product_id,
                warehouse_id=item.warehouse_id,
                kind=MovementType.RELEASE,
                quantity=item.quantity,
                before=StockLevel(on_hand, reserved + item.quantity),
                after=StockLevel(on_hand, reserved),
                reason=f"Reservation of order {reservation.order_id} {reason.value}",
                reference=str(reservation.order_id),
                user_id=None,
                now=now,
            )
        )
    reservation.status = ReservationStatus.RELEASED.value
    reservation.reason = reason.value
    reservation.updated_at = now
    await session.flush()
    events.publish_inventory_stock_released(
        uow,
        InventoryStockReleasedPayload(
            order_id=reservation.order_id,
            reservation_id=reservation.id,
            reason=reason.value,
            items=_stock_items(items),
        ),
    )


def _refuse(order_id: UUID, reservation: Reservation, action: str) -> DeadLetter:
    return DeadLetter(
        f"illegal transition: the reservation of order {order_id} is {reservation.status}, "
        f"it cannot be {action}"
    )


async def confirm_order(uow: UnitOfWork, order_id: UUID) -> None:
    """pending → confirmed: the reserved units leave (on_hand and reserved both fall)."""
    session = uow.session
    reservation = await _reservation_of(session, order_id, lock=True)
    if reservation is None:
        # Not dropped: sales confirms only reserved orders, so this needs a human look.
        raise DeadLetter(f"order {order_id} has no reservation to confirm")
    decision = domain.decide(ReservationStatus(reservation.status), ReservationStatus.CONFIRMED)
    if decision is domain.Decision.IGNORE:
        log.info("reservation of order %s is already confirmed", order_id)
        return
    if decision is domain.Decision.REFUSE:
        raise _refuse(order_id, reservation, "confirmed")
    items = await _items(session, reservation.id)
    now = utc_now()
    low: list[tuple[UUID, UUID, int, int]] = []
    for item in items:
        row = (
            await session.execute(
                update(_STOCK)
                .where(
                    _STOCK.c.product_id == item.product_id,
                    _STOCK.c.warehouse_id == item.warehouse_id,
                    _STOCK.c.reserved >= item.quantity,
                )
                .values(
                    on_hand=_STOCK.c.on_hand - item.quantity,
                    reserved=_STOCK.c.reserved - item.quantity,
                    updated_at=now,
                )
                .returning(_STOCK.c.on_hand, _STOCK.c.reserved, _STOCK.c.min_quantity)
            )
        ).first()
        if row is None:
            raise RuntimeError(
                f"stock of {item.product_id} holds fewer reserved units than reservation "
                f"{reservation.id} took"
            )
        on_hand, reserved, min_quantity = int(row[0]), int(row[1]), int(row[2])
        session.add(
            _movement(
                product_id=item.product_id,
                warehouse_id=item.warehouse_id,
                kind=MovementType.CONFIRMATION,
                quantity=item.quantity,
                before=StockLevel(on_hand + item.quantity, reserved + item.quantity),
                after=StockLevel(on_hand, reserved),
                reason=f"Order {order_id} confirmed",
                reference=str(order_id),
                user_id=None,
                now=now,
            )
        )
        if domain.is_low(on_hand - reserved, min_quantity):
            low.append((item.product_id, item.warehouse_id, on_hand - reserved, min_quantity))
    reservation.status = ReservationStatus.CONFIRMED.value
    reservation.updated_at = now
    await session.flush()
    events.publish_inventory_stock_confirmed(
        uow,
        InventoryStockConfirmedPayload(
            order_id=order_id, reservation_id=reservation.id, items=_stock_items(items)
        ),
    )
    if low:
        # Deleted products too: they cannot be deleted while their units are reserved.
        products = {
            p.id: p
            for p in (
                await session.scalars(
                    select(Product).where(col(Product.id).in_([x[0] for x in low]))
                )
            ).all()
        }
        for product_id, warehouse_id, available, min_quantity in low:
            _emit_low_alert(uow, products[product_id], warehouse_id, available, min_quantity)


async def cancel_order(uow: UnitOfWork, order_id: UUID) -> None:
    """pending → released (cancelled). With no reservation yet (the cancellation overtook the
    order), a released tombstone makes the late `sales.order.created` reserve nothing."""
    session = uow.session
    reservation = await _reservation_of(session, order_id, lock=True)
    if reservation is None:
        now = utc_now()
        session.add(
            Reservation(
                order_id=order_id,
                status=ReservationStatus.RELEASED.value,
                reason=ReleaseReason.CANCELLED.value,
                warehouse_id=await _default_warehouse_id(session),
                expires_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        # A concurrent `created` of the same order fails one of the two here; it is retried.
        await session.flush()
        log.info("order %s cancelled before any reservation: tombstone recorded", order_id)
        events.publish_inventory_stock_released(
            uow,
            InventoryStockReleasedPayload(
                order_id=order_id, reservation_id=None, reason=ReleaseReason.CANCELLED, items=[]
            ),
        )
        return
    decision = domain.decide(ReservationStatus(reservation.status), ReservationStatus.RELEASED)
    if decision is domain.Decision.IGNORE:
        log.info("reservation of order %s is already released (%s)", order_id, reservation.reason)
        return
    if decision is domain.Decision.REFUSE:
        raise _refuse(order_id, reservation, "released")
    await _release(uow, reservation, ReleaseReason.CANCELLED)


async def expire_reservations(ctx: ServiceContext) -> int:
    """Release pending reservations older than 15 minutes (periodic job); the count."""
    now = utc_now()
    async with ctx.database.read_session() as session:
        due = (
            await session.scalars(
                select(Reservation.id)
                .where(
                    col(Reservation.status) == ReservationStatus.PENDING.value,
                    col(Reservation.expires_at) <= now,
                )
                .order_by(col(Reservation.expires_at))
                .limit(EXPIRY_BATCH)
            )
        ).all()
    released = 0
    for reservation_id in due:
        # One transaction each: a confirmation holding one reservation delays no other.
        async with ctx.unit_of_work() as uow:
            statement = (
                select(Reservation)
                .where(
                    and_(
                        col(Reservation.id) == reservation_id,
                        col(Reservation.status) == ReservationStatus.PENDING.value,
                    )
                )
                .with_for_update(skip_locked=True)
            )
            reservation = (await uow.session.scalars(statement)).first()
            if reservation is None:
                continue  # confirmed, cancelled or being handled meanwhile
            await _release(uow, reservation, ReleaseReason.EXPIRED)
            await uow.commit()
            released += 1
    if released:
        log.info("released %d expired reservations", released)
    return released

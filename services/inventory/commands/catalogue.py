"""Categories and products: create, update (If-Match), delete.

Every product change emits its event with the product's full state (sales keeps a replica of
the catalogue) and, once committed, retires the cached product list pages.
"""

from __future__ import annotations

from functools import partial
from typing import Any, TypeVar
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    InventoryProductCreatedPayload,
    InventoryProductDeletedPayload,
    InventoryProductUpdatedPayload,
)
from generated.inventory import models
from services.inventory import domain
from services.inventory.errors import unknown
from services.inventory.queries import invalidate_product_list
from services.inventory.tables import Category, Product, Stock
from services.platform import (
    JsonCache,
    Problem,
    UnitOfWork,
    check_rules,
    flush_unique,
    require_if_match,
    resource_not_found,
    utc_now,
)

T = TypeVar("T")

# --- categories -----------------------------------------------------------------------------


async def _category(session: AsyncSession, category_id: UUID) -> Category:
    """The category, row-locked for the change (404 when there is none)."""
    statement = select(Category).where(col(Category.id) == category_id).with_for_update()
    found = (await session.scalars(statement)).first()
    if found is None:
        raise resource_not_found("Category", category_id)
    return found


async def _referenced_category(
    session: AsyncSession, category_id: UUID | None, field: str
) -> UUID | None:
    """The id of an existing category named in a body (422 when there is none)."""
    if category_id is None:
        return None
    if await session.get(Category, category_id) is None:
        raise unknown("category", category_id, field)
    return category_id


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
    uow: UnitOfWork, body: models.CategoryCreate, *, new_id: UUID | None = None
) -> models.Category:
    """A new category; `new_id` fixes its id (the demo data set's, known to the docs)."""
    session = uow.session
    slug = domain.slugify(body.name) if body.slug is MISSING else body.slug
    check_rules(domain.slug_errors(slug))
    parent = await _referenced_category(session, _given(body.parent_id), "parent_id")
    now = utc_now()
    category = Category(
        id=new_id or uuid4(),
        name=body.name,
        slug=slug,
        parent_id=parent,
        description=_given(body.description),
        created_at=now,
        updated_at=now,
    )
    session.add(category)
    await flush_unique(session, _slug_taken(slug))
    return models.Category.model_validate(category, from_attributes=True)


async def update_category(
    uow: UnitOfWork, category_id: UUID, body: models.CategoryUpdate, if_match: str | None
) -> models.Category:
    """The fields the body gives change (a null parent_id makes a root category)."""
    session = uow.session
    changes = _changes(body)
    if "parent_id" in changes:
        await _lock_hierarchy(uow)
    category = await _category(session, category_id)
    require_if_match(if_match, category.version)
    if "slug" in changes and changes["slug"] != category.slug:
        check_rules(domain.slug_errors(changes["slug"]))
    if "parent_id" in changes:
        parent = await _referenced_category(session, changes["parent_id"], "parent_id")
        if parent != category.parent_id:
            parents: dict[UUID, UUID | None] = dict(
                (await session.execute(select(Category.id, Category.parent_id))).all()
            )
            if domain.creates_cycle(category.id, parent, parents):
                raise _cycle()
    if _apply(category, changes):
        await flush_unique(session, _slug_taken(category.slug))
    return models.Category.model_validate(category, from_attributes=True)


def _cycle() -> Problem:
    return Problem(
        422,
        detail="A category cannot be placed below itself or its descendants.",
        errors=[{"field": "parent_id", "message": "would create a cycle in the hierarchy"}],
    )


async def delete_category(uow: UnitOfWork, category_id: UUID) -> None:
    session = uow.session
    await _lock_hierarchy(uow)
    category = await _category(session, category_id)
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


# --- products -------------------------------------------------------------------------------


async def _product(session: AsyncSession, product_id: UUID) -> Product:
    """A product that is not deleted, row-locked for the change (404 otherwise)."""
    statement = (
        select(Product)
        .where(col(Product.id) == product_id, col(Product.deleted_at).is_(None))
        .with_for_update()
    )
    found = (await session.scalars(statement)).first()
    if found is None:
        raise resource_not_found("Product", product_id)
    return found


def _sku_taken(sku: str) -> Problem:
    return Problem(409, detail=f"A product with SKU {sku} already exists.")


def _price(text_value: str) -> str:
    """The price in its canonical form ("0012.50" is "12.50"); 422 outside the range."""
    value = domain.parse_price(text_value)
    if value is None:
        check_rules(domain.price_errors(text_value))
    assert value is not None  # check_rules() raised otherwise
    return domain.format_price(value)


def _state(product: Product) -> dict[str, Any]:
    """What every product event carries: the product's state after the change."""
    return {
        "product_id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "price": product.price,
        "currency": product.currency,
        "category_id": product.category_id,
        "status": product.status,
        "version": product.version,
        "occurred_at": utc_now(),
    }


async def create_product(
    uow: UnitOfWork,
    cache: JsonCache,
    body: models.ProductCreate,
    *,
    new_id: UUID | None = None,
) -> models.Product:
    """A new product; `new_id` fixes its id (the demo data set's, known to the docs)."""
    session = uow.session
    check_rules(domain.sku_errors(body.sku) + domain.price_errors(body.price))
    category = await _referenced_category(session, _given(body.category_id), "category_id")
    if (await session.scalars(select(Product.id).where(col(Product.sku) == body.sku))).first():
        raise _sku_taken(body.sku)
    now = utc_now()
    product = Product(
        id=new_id or uuid4(),
        sku=body.sku,
        name=body.name,
        description=_given(body.description),
        price=_price(body.price),
        currency=domain.DEFAULT_CURRENCY if body.currency is MISSING else body.currency,
        category_id=category,
        status=domain.ProductStatus.ACTIVE.value if body.status is MISSING else body.status.value,
        created_at=now,
        updated_at=now,
    )
    session.add(product)
    await flush_unique(session, _sku_taken(body.sku))
    events.publish_inventory_product_created(uow, InventoryProductCreatedPayload(**_state(product)))
    # After the commit: a list cached before it must not be served any more.
    uow.after_commit(partial(invalidate_product_list, cache))
    return models.Product.model_validate(product, from_attributes=True)


async def update_product(
    uow: UnitOfWork,
    cache: JsonCache,
    product_id: UUID,
    body: models.ProductUpdate,
    if_match: str | None,
) -> models.Product:
    """The fields the body gives change; the SKU is not among them (immutable)."""
    session = uow.session
    product = await _product(session, product_id)
    require_if_match(if_match, product.version)
    changes = _changes(body)
    if "price" in changes:
        changes["price"] = _price(changes["price"])
    if "category_id" in changes:
        await _referenced_category(session, changes["category_id"], "category_id")
    if "status" in changes:
        changes["status"] = changes["status"].value
    if _apply(product, changes):
        await session.flush()
        events.publish_inventory_product_updated(
            uow, InventoryProductUpdatedPayload(**_state(product))
        )
        uow.after_commit(partial(invalidate_product_list, cache))
    return models.Product.model_validate(product, from_attributes=True)


async def delete_product(uow: UnitOfWork, cache: JsonCache, product_id: UUID) -> None:
    """Soft delete (ADR 0003), refused while units are on hand."""
    session = uow.session
    product = await _product(session, product_id)
    # Stock rows are locked too: a receipt cannot slip in between the check and the delete.
    rows = (
        await session.scalars(
            select(Stock).where(col(Stock.product_id) == product.id).with_for_update()
        )
    ).all()
    on_hand = sum(row.on_hand for row in rows)
    if on_hand:
        raise Problem(
            409, detail=f"Product {product.id} has {on_hand} units on hand; it cannot be deleted."
        )
    now = utc_now()
    product.deleted_at = now
    product.updated_at = now
    product.version += 1
    await session.flush()
    events.publish_inventory_product_deleted(uow, InventoryProductDeletedPayload(**_state(product)))
    uow.after_commit(partial(invalidate_product_list, cache))


# --- PATCH bodies ---------------------------------------------------------------------------


def _given(value: T | MISSING) -> T | None:
    """An optional body field's value; None when the body leaves it out."""
    return None if value is MISSING else value


def _changes(body: models.CategoryUpdate | models.ProductUpdate) -> dict[str, Any]:
    """The fields a PATCH body gives (null included: it clears the field)."""
    return {name: getattr(body, name) for name in body.model_fields_set}


def _apply(row: Category | Product, changes: dict[str, Any]) -> bool:
    """Set the changed fields; when any differs, bump the version and the update time."""
    changed = {name: value for name, value in changes.items() if getattr(row, name) != value}
    if not changed:
        return False
    for name, value in changed.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = utc_now()
    return True

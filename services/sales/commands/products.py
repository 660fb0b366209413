"""The product replica's writes: one product's description, from inventory's events or its API,
applied last-writer-wins by inventory's version (ADR 0016).

The write is one `INSERT ... ON CONFLICT (product_id) DO UPDATE ... WHERE products.version <
excluded.version`: whichever of two concurrent writers (the consumer and an order asking
inventory over HTTP) commits last, the newer version stays. The row is read first only to tell
a redelivery from news and to refuse a changed SKU (`domain.replica_change`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from generated.events.models import (
    InventoryProductCreatedPayload,
    InventoryProductDeletedPayload,
    InventoryProductUpdatedPayload,
)
from services.platform import UnitOfWork
from services.sales import domain
from services.sales.tables import Product, metadata

ProductPayload = (
    InventoryProductCreatedPayload | InventoryProductUpdatedPayload | InventoryProductDeletedPayload
)


@dataclass(frozen=True)
class ReplicaRow:
    """A product as the replica stores it."""

    product_id: UUID
    sku: str
    name: str
    price: Decimal
    currency: str
    status: str
    version: int
    deleted: bool
    updated_at: datetime


def row_of_event(payload: ProductPayload, *, deleted: bool) -> ReplicaRow:
    return ReplicaRow(
        product_id=payload.product_id,
        sku=payload.sku,
        name=payload.name,
        price=Decimal(payload.price),
        currency=payload.currency,
        status=payload.status.value,
        version=payload.version,
        deleted=deleted,
        updated_at=payload.occurred_at,
    )


def _upsert_if_newer(dialect: str, values: dict[str, Any]) -> Any:
    table = metadata.tables["products"]
    if dialect == "postgresql":
        statement: Any = postgresql.insert(table).values(values)
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(values)
    else:
        raise ValueError(f"unsupported database {dialect!r}: PostgreSQL or SQLite only")
    return statement.on_conflict_do_update(
        index_elements=[table.c.product_id],
        set_={name: statement.excluded[name] for name in values if name != "product_id"},
        where=table.c.version < statement.excluded.version,
    )


async def replicate(uow: UnitOfWork, row: ReplicaRow) -> domain.ReplicaChange:
    """Apply `row` when it is news; what it did (STALE and SKU_CHANGED write nothing)."""
    stored = (
        await uow.session.execute(
            select(col(Product.version), col(Product.sku)).where(
                col(Product.product_id) == row.product_id
            )
        )
    ).first()
    change = domain.replica_change(
        None if stored is None else domain.ReplicaVersion(stored.version, stored.sku),
        domain.ReplicaVersion(row.version, row.sku),
    )
    if change in (domain.ReplicaChange.INSERT, domain.ReplicaChange.UPDATE):
        await uow.session.execute(_upsert_if_newer(uow.dialect, asdict(row)))
    return change

"""The inventory service's tables (SQLModel, in the service's own registry — see
platform/tables.py).

The first migration (`migrations/versions/0001_initial.py`) creates exactly these. The stock
invariants (nothing negative, never more reserved than on hand) and the price range are CHECK
constraints: the database refuses a bad row whatever code writes it.

Rows validate straight into the generated models (`models.Product.model_validate(row,
from_attributes=True)`): a price reads as the wire's decimal string, a stock row has its
`available`, a reservation its `items` (loaded with `selectinload(Reservation.items)`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import registry, relationship
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Relationship, SQLModel

from services.inventory.domain import format_price
from services.platform import utc_timestamp


class Price(TypeDecorator[str]):
    """`NUMERIC(12, 2)` in the database, the wire's decimal string in Python ("349.90"): what
    the generated models and events carry. Binds a string or a Decimal."""

    impl = Numeric(12, 2)
    cache_ok = True

    @property
    def python_type(self) -> type[str]:
        return str

    def process_bind_param(self, value: str | Decimal | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)

    def process_result_value(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else format_price(Decimal(value))


class InventoryTable(SQLModel, registry=registry()):
    """Base of the inventory tables; gives them their own MetaData."""


metadata: MetaData = InventoryTable.metadata


def _fk(target: str, *, nullable: bool = False, ondelete: str = "RESTRICT", **kwargs: Any) -> Any:
    return Field(
        default=None if nullable else ...,
        sa_column=Column(ForeignKey(target, ondelete=ondelete), nullable=nullable, **kwargs),
    )


class Category(InventoryTable, table=True):
    __tablename__ = "categories"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=255)
    slug: str = Field(max_length=120, unique=True)
    # RESTRICT: a category with children cannot be deleted (the use case answers 409 first).
    parent_id: UUID | None = _fk("categories.id", nullable=True, index=True)
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = 1


class Product(InventoryTable, table=True):
    """A product. Deleted products stay (movements and stock history point at them; their SKU
    stays taken) but are gone from the API."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price >= 0.01 AND price <= 9999999.99", name="products_price_range"),
        CheckConstraint(
            "status IN ('active', 'inactive', 'discontinued')", name="products_status_valid"
        ),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    sku: str = Field(max_length=100, unique=True)
    name: str = Field(max_length=255, index=True)
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    price: str = Field(sa_column=Column(Price(), nullable=False))  # "349.90"
    currency: str = Field(max_length=3)
    # SET NULL: deleting a category is refused while live products use it; deleted products
    # keep no claim on it.
    category_id: UUID | None = _fk("categories.id", nullable=True, ondelete="SET NULL", index=True)
    status: str = Field(max_length=20)  # domain.ProductStatus
    deleted_at: datetime | None = utc_timestamp(nullable=True)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = 1


class Warehouse(InventoryTable, table=True):
    __tablename__ = "warehouses"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    name: str = Field(max_length=255)
    address: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    is_default: bool = False
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = 1


class Stock(InventoryTable, table=True):
    """Units of one product in one warehouse; available = on_hand - reserved."""

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="stock_on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="stock_reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="stock_reserved_within_on_hand"),
        CheckConstraint("min_quantity >= 0", name="stock_min_quantity_not_negative"),
        Index("ix_stock_warehouse_id", "warehouse_id"),
    )

    product_id: UUID = Field(
        sa_column=Column(ForeignKey("products.id", ondelete="RESTRICT"), primary_key=True)
    )
    warehouse_id: UUID = Field(
        sa_column=Column(ForeignKey("warehouses.id", ondelete="RESTRICT"), primary_key=True)
    )
    on_hand: int = 0
    reserved: int = 0
    min_quantity: int = 10  # domain.DEFAULT_MIN_QUANTITY
    updated_at: datetime = utc_timestamp(nullable=False)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class Movement(InventoryTable, table=True):
    """One change of stock, written in the transaction of the change. `id` orders the log and
    is the keyset of the movements cursor."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        CheckConstraint(
            "type IN ('in', 'out', 'adjustment', 'reservation', 'release', 'confirmation')",
            name="stock_movements_type_valid",
        ),
        Index("ix_stock_movements_product_id_id", "product_id", "id"),
        Index("ix_stock_movements_warehouse_id_id", "warehouse_id", "id"),
        Index("ix_stock_movements_reference", "reference"),
    )

    # BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER primary key.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    product_id: UUID = _fk("products.id")
    warehouse_id: UUID = _fk("warehouses.id")
    type: str = Field(max_length=20)  # domain.MovementType
    quantity: int  # units moved; signed for adjustments
    on_hand_before: int
    on_hand_after: int
    reserved_before: int
    reserved_after: int
    reason: str = Field(max_length=255)
    reference: str | None = Field(default=None, max_length=255)
    user_id: UUID | None = None
    created_at: datetime = utc_timestamp(nullable=False)


class Reservation(InventoryTable, table=True):
    """The stock held for one order. `order_id` is unique: an order reserves at most once,
    and a cancellation that overtook the order leaves a released row with no items (a
    tombstone) so that the late `sales.order.created` reserves nothing."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'confirmed', 'released')", name="reservations_status_valid"
        ),
        CheckConstraint(
            "reason IS NULL OR reason IN ('cancelled', 'expired')",
            name="reservations_reason_valid",
        ),
        Index("ix_reservations_status_expires_at", "status", "expires_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    order_id: UUID = Field(unique=True)
    status: str = Field(max_length=20)  # domain.ReservationStatus
    reason: str | None = Field(default=None, max_length=20)  # domain.ReleaseReason
    warehouse_id: UUID = _fk("warehouses.id")
    expires_at: datetime = utc_timestamp(nullable=False)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    # Read-only and never lazy (async): load it with selectinload(Reservation.items).
    items: list[ReservationItem] = Relationship(
        sa_relationship=relationship(
            "ReservationItem",
            collection_class=list,  # the postponed annotation does not say it (uselist)
            viewonly=True,
            lazy="raise",
            order_by="(ReservationItem.product_id, ReservationItem.warehouse_id)",
        )
    )


class ReservationItem(InventoryTable, table=True):
    __tablename__ = "reservation_items"
    __table_args__ = (CheckConstraint("quantity >= 1", name="reservation_items_quantity_positive"),)

    reservation_id: UUID = Field(
        sa_column=Column(ForeignKey("reservations.id", ondelete="CASCADE"), primary_key=True)
    )
    product_id: UUID = Field(
        sa_column=Column(ForeignKey("products.id", ondelete="RESTRICT"), primary_key=True)
    )
    warehouse_id: UUID = Field(
        sa_column=Column(ForeignKey("warehouses.id", ondelete="RESTRICT"), primary_key=True)
    )
    quantity: int


class ReservationFailure(InventoryTable, table=True):
    """An order whose items could not all be reserved, with what was short (the
    reservation_failed event carries the same)."""

    __tablename__ = "reservation_failures"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    order_id: UUID = Field(index=True)
    reason: str = Field(sa_column=Column(String(1000), nullable=False))
    items: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = utc_timestamp(nullable=False)

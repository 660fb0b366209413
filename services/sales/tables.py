"""The sales service's tables (SQLModel, in the service's own registry — see platform/tables.py).

The migrations (`migrations/versions/`) create exactly these: 0001 the customers, 0002 the
product replica, 0003 the orders, 0004 their shipment. "At most one default address per
customer" is a partial unique index: the database refuses a second default whatever code
writes it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, Index, MetaData, Numeric, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.platform import Amount, utc_timestamp


class SalesTable(SQLModel, registry=registry()):
    """Base of the sales tables; gives them their own MetaData."""


metadata: MetaData = SalesTable.metadata


class Customer(SalesTable, table=True):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'inactive')", name="customers_status_valid"),
        CheckConstraint("document_type IN ('cpf', 'cnpj')", name="customers_document_type_valid"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=255)
    email: str = Field(max_length=254, unique=True)  # normalise_email's form
    phone: str | None = Field(default=None, max_length=21)
    document: str = Field(max_length=14, unique=True)  # digits only
    document_type: str = Field(max_length=4)  # the kit's DocumentType
    status: str = Field(max_length=10)  # domain.CustomerStatus
    user_id: UUID | None = Field(default=None, unique=True)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = Field(default=1)


class CustomerAddress(SalesTable, table=True):
    __tablename__ = "customer_addresses"
    __table_args__ = (
        Index(
            "ux_customer_addresses_one_default",
            "customer_id",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
        Index("ix_customer_addresses_customer_id_position", "customer_id", "position"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    customer_id: UUID = Field(
        sa_column=Column(ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    )
    # Oldest first: the order addresses were added in (several share one request's timestamp).
    position: int
    street: str = Field(max_length=255)
    number: str = Field(max_length=20)
    complement: str | None = Field(default=None, max_length=255)
    neighborhood: str = Field(max_length=255)
    city: str = Field(max_length=255)
    state: str = Field(max_length=2)
    zip_code: str = Field(max_length=9)
    country: str = Field(max_length=2)
    is_default: bool = Field(default=False)


class Product(SalesTable, table=True):
    """The catalogue replica: inventory's products as its events (or, for one not replicated
    yet, its API) last described them. `version` is inventory's: a row changes only for a
    newer one (last writer wins), and a deleted product stays as a tombstone with the delete's
    version, so an older event arriving late cannot bring it back (ADR 0016)."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint(
            "status IN ('active', 'inactive', 'discontinued')", name="products_status_valid"
        ),
        CheckConstraint("version >= 1", name="products_version_positive"),
    )

    product_id: UUID = Field(primary_key=True)
    sku: str = Field(max_length=100)
    name: str = Field(max_length=255)
    price: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    currency: str = Field(max_length=3)
    status: str = Field(max_length=20)  # generated ProductStatus
    version: int
    deleted: bool = Field(default=False)
    updated_at: datetime = utc_timestamp(nullable=False)  # the event's occurred_at


ORDER_STATUSES = "'pending', 'confirmed', 'shipped', 'completed', 'cancelled'"


class Order(SalesTable, table=True):
    """An order and its saga state: `stock_status` and `payment_status` hold the answers of
    inventory and financial, whatever order they came in (domain.decide reads them)."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(f"status IN ({ORDER_STATUSES})", name="orders_status_valid"),
        CheckConstraint(
            "stock_status IN ('pending', 'reserved', 'failed', 'released')",
            name="orders_stock_status_valid",
        ),
        CheckConstraint(
            "payment_status IN ('pending', 'approved', 'declined', 'refunded')",
            name="orders_payment_status_valid",
        ),
        CheckConstraint("total = subtotal - discount + shipping", name="orders_total_adds_up"),
        Index("ix_orders_customer_id_created_at", "customer_id", "created_at"),
        Index("ix_orders_status_created_at", "status", "created_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    order_number: str = Field(max_length=15, unique=True)
    customer_id: UUID = Field(sa_column=Column(ForeignKey("customers.id"), nullable=False))
    customer_email: str = Field(max_length=254)
    status: str = Field(max_length=10)
    stock_status: str = Field(max_length=10)
    payment_status: str = Field(max_length=10)
    subtotal: str = Field(sa_column=Column(Amount(), nullable=False))
    discount: str = Field(sa_column=Column(Amount(), nullable=False))
    shipping: str = Field(sa_column=Column(Amount(), nullable=False))
    total: str = Field(sa_column=Column(Amount(), nullable=False))
    currency: str = Field(max_length=3)
    payment_method: str = Field(max_length=13)
    installments: int | None = Field(default=None)
    shipping_address: dict[str, Any] = Field(sa_column=Column(JSON(), nullable=False))
    cancellation_reason: str | None = Field(default=None, max_length=255)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    confirmed_at: datetime | None = utc_timestamp(nullable=True)
    cancelled_at: datetime | None = utc_timestamp(nullable=True)
    # The shipment as logistics last reported it (domain.Shipment; migration 0004): null until
    # logistics dispatches, delivers or fails the order's shipment.
    shipment_id: UUID | None = Field(default=None)
    tracking_code: str | None = Field(default=None, max_length=40)
    carrier_code: str | None = Field(default=None, max_length=20)
    dispatched_at: datetime | None = utc_timestamp(nullable=True)
    delivered_at: datetime | None = utc_timestamp(nullable=True)
    shipment_failed_at: datetime | None = utc_timestamp(nullable=True)
    shipment_failure: str | None = Field(default=None, max_length=255)
    version: int = Field(default=1)


class OrderItem(SalesTable, table=True):
    """An order line with the product's SKU, name and unit price as they were when ordered."""

    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="order_items_quantity_positive"),
        CheckConstraint("discount <= unit_price * quantity", name="order_items_discount_bounded"),
    )

    order_id: UUID = Field(
        sa_column=Column(
            ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    position: int = Field(primary_key=True)
    product_id: UUID
    sku: str = Field(max_length=100)
    name: str = Field(max_length=255)
    unit_price: str = Field(sa_column=Column(Amount(), nullable=False))
    quantity: int
    discount: str = Field(sa_column=Column(Amount(), nullable=False))
    total: str = Field(sa_column=Column(Amount(), nullable=False))


class OrderStatusChange(SalesTable, table=True):
    """The status history: one row per status an order took, with who or what moved it."""

    __tablename__ = "order_status_history"
    __table_args__ = (Index("ix_order_status_history_order_id_id", "order_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: UUID = Field(
        sa_column=Column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    )
    from_status: str | None = Field(default=None, max_length=10)
    to_status: str = Field(max_length=10)
    reason: str = Field(max_length=255)
    actor: str = Field(max_length=64)
    event_id: UUID | None = Field(default=None)
    occurred_at: datetime = utc_timestamp(nullable=False)


class OrderCounter(SalesTable, table=True):
    """The last order number of each year: taken with `UPDATE … RETURNING` in the order's own
    transaction, so numbers are unique and, since a rolled-back order gives its number back,
    without gaps (ADR 0018)."""

    __tablename__ = "order_counters"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_number: int = Field(default=0)

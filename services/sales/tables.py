"""The sales service's tables (SQLModel, in the service's own registry — see platform/tables.py).

The migrations (`migrations/versions/`) create exactly these: 0001 the customers, 0002 the
product replica. "At most one default address per customer" is a partial unique index: the
database refuses a second default whatever code writes it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, MetaData, Numeric, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.platform import utc_timestamp


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
    document_type: str = Field(max_length=4)  # domain.DocumentType
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

"""The sales service's tables (SQLModel, in the service's own registry — see platform/tables.py).

The first migration (`migrations/versions/0001_initial.py`) creates exactly these. "At most one
default address per customer" is a partial unique index: the database refuses a second default
whatever code writes it.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, MetaData, text
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

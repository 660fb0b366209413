"""The financial service's tables (SQLModel, in the service's own registry — see
platform/tables.py). The first migration (`migrations/versions/0001_initial.py`) creates exactly
these.

One payment per order is the unique `payments.order_id`; one credit and at most one debit per
payment is the unique `(payment_id, type)` of the ledger: whatever code runs twice, the
database refuses a second charge or a second booking. Amounts are `NUMERIC(14, 2)` read back as
the wire's decimal string.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid4

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    Index,
    MetaData,
    UniqueConstraint,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.platform import Amount, utc_timestamp


class FinancialTable(SQLModel, registry=registry()):
    """Base of the financial tables; gives them their own MetaData."""


metadata: MetaData = FinancialTable.metadata

PAYMENT_STATUSES = "'pending', 'processing', 'approved', 'declined', 'refunded', 'cancelled'"


class Payment(FinancialTable, table=True):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"status IN ({PAYMENT_STATUSES})", name="payments_status_valid"),
        CheckConstraint("amount >= 0", name="payments_amount_not_negative"),
        Index("ix_payments_created_at", "created_at"),
        Index("ix_payments_status", "status"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    order_id: UUID = Field(unique=True)
    order_number: str = Field(max_length=20)
    customer_id: UUID
    amount: str = Field(sa_column=Column(Amount(), nullable=False))
    currency: str = Field(max_length=3)
    method: str = Field(max_length=20)  # generated PaymentMethod
    status: str = Field(max_length=20)  # domain.PaymentStatus
    failure_reason: str | None = Field(default=None, max_length=255)
    gateway_reference: str | None = Field(default=None, max_length=100)
    refund_reference: str | None = Field(default=None, max_length=100)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    processed_at: datetime | None = utc_timestamp(nullable=True)
    refunded_at: datetime | None = utc_timestamp(nullable=True)
    cancelled_at: datetime | None = utc_timestamp(nullable=True)


class OrderCancellation(FinancialTable, table=True):
    """An order cancelled before its `sales.order.created` arrived: the late event then makes
    the payment cancelled at once and charges nothing."""

    __tablename__ = "order_cancellations"

    order_id: UUID = Field(primary_key=True)
    reason: str = Field(max_length=255)
    cancelled_at: datetime = utc_timestamp(nullable=False)


class LedgerTransaction(FinancialTable, table=True):
    """A credit (an approved payment) or a debit (its refund). `booked_on` and `booked_month`
    (UTC) are kept so that a summary groups by a plain column on PostgreSQL and SQLite alike."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint("type IN ('credit', 'debit')", name="ledger_transactions_type_valid"),
        CheckConstraint(
            "category IN ('sales', 'refunds')", name="ledger_transactions_category_valid"
        ),
        CheckConstraint("amount > 0", name="ledger_transactions_amount_positive"),
        UniqueConstraint("payment_id", "type", name="ledger_transactions_payment_type_key"),
        Index("ix_ledger_transactions_booked_on", "booked_on"),
        Index("ix_ledger_transactions_occurred_at", "occurred_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    type: str = Field(max_length=10)  # domain.TransactionType
    category: str = Field(max_length=30)  # domain.TransactionCategory
    amount: str = Field(sa_column=Column(Amount(), nullable=False))
    currency: str = Field(max_length=3)
    reference: str = Field(max_length=255)
    description: str = Field(max_length=255)
    payment_id: UUID | None = Field(default=None)
    order_id: UUID | None = Field(default=None)
    occurred_at: datetime = utc_timestamp(nullable=False)
    booked_on: date = Field(sa_column=Column(Date(), nullable=False))
    booked_month: date = Field(sa_column=Column(Date(), nullable=False))

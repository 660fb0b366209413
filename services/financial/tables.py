"""The financial service's tables (SQLModel, in the service's own registry — see
platform/tables.py). The first migration (`migrations/versions/0001_initial.py`) creates exactly
these; `0002_charge_conversations.py` adds the causes of payments and cancellations;
`0004_accounts.py` the suppliers and accounts payable and receivable.

One payment per order is the unique `payments.order_id`; one credit and at most one debit per
payment is the unique `(payment_id, type)` of the ledger: whatever code runs twice, the
database refuses a second charge or a second booking. Invoices (migration 0003): one that is
not cancelled per order (a partial unique index), `(series, number)` and `nfe_key` unique, and
the numbers of a series taken from its `invoice_series` counter row. Amounts are
`NUMERIC(14, 2)` read back as the wire's decimal string.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from uuid import UUID, uuid4

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    Dialect,
    Index,
    MetaData,
    Numeric,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from services.financial.domain import format_rate
from services.platform import Amount, utc_timestamp


class Rate(TypeDecorator[str]):
    """`NUMERIC(5, 4)` in the database, the wire's decimal string in Python ("0.1800")."""

    impl = Numeric(5, 4)
    cache_ok = True

    @property
    def python_type(self) -> type[str]:
        return str

    def process_bind_param(self, value: str | Decimal | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)

    def process_result_value(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else format_rate(Decimal(value))


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
    # Where notification writes about the payment (its processed / failed events carry it).
    # None on rows older than migration 0005.
    customer_email: str | None = Field(default=None, max_length=254)
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
    # The `sales.order.created` that made the payment: its conversation and its id, which the
    # payment's processed / failed event carries (charged after that event's transaction,
    # maybe by the recovery job). None on rows older than migration 0002.
    correlation_id: UUID | None = Field(default=None)
    order_event_id: UUID | None = Field(default=None)


class OrderCancellation(FinancialTable, table=True):
    """An order's cancellation as sales announced it (the first `sales.order.cancelled`).
    Read when the payment is made (cancelled before the order: the late payment is cancelled
    at once, nothing charged), when a charge's approval is recorded (cancelled while the
    gateway had it: refunded at once) and by the recovery job (approved and cancelled, not
    refunded yet). `correlation_id` / `event_id` are that event's: the refund's cause."""

    __tablename__ = "order_cancellations"

    order_id: UUID = Field(primary_key=True)
    reason: str = Field(max_length=255)
    cancelled_at: datetime = utc_timestamp(nullable=False)
    correlation_id: UUID | None = Field(default=None)
    event_id: UUID | None = Field(default=None)


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


INVOICE_STATUSES = "'pending', 'issued', 'sent', 'cancelled'"


class Invoice(FinancialTable, table=True):
    """An order's invoice (ADR 0014). `amount + taxes = total`; `total` is what was paid."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint(f"status IN ({INVOICE_STATUSES})", name="invoices_status_valid"),
        CheckConstraint("number BETWEEN 1 AND 999999999", name="invoices_number_in_range"),
        # round(): SQLite keeps NUMERIC as a float (286.92 + 62.98 is not 349.90 there).
        CheckConstraint(
            "round(amount + taxes, 2) = round(total, 2)", name="invoices_total_adds_up"
        ),
        UniqueConstraint("series", "number", name="invoices_series_number_key"),
        UniqueConstraint("nfe_key", name="invoices_nfe_key_key"),
        Index(
            "ix_invoices_order_id_live",
            "order_id",
            unique=True,
            postgresql_where=text("status <> 'cancelled'"),
            sqlite_where=text("status <> 'cancelled'"),
        ),
        Index("ix_invoices_created_at", "created_at"),
        Index("ix_invoices_customer_id", "customer_id"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    order_id: UUID
    order_number: str = Field(max_length=20)
    customer_id: UUID
    series: str = Field(max_length=3)
    number: int
    nfe_key: str = Field(max_length=44)
    amount: str = Field(sa_column=Column(Amount(), nullable=False))
    taxes: str = Field(sa_column=Column(Amount(), nullable=False))
    tax_rate: str = Field(sa_column=Column(Rate(), nullable=False))
    total: str = Field(sa_column=Column(Amount(), nullable=False))
    currency: str = Field(max_length=3)
    status: str = Field(max_length=20)  # domain.InvoiceStatus
    reason: str | None = Field(default=None, max_length=255)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    issued_at: datetime | None = utc_timestamp(nullable=True)
    sent_at: datetime | None = utc_timestamp(nullable=True)
    cancelled_at: datetime | None = utc_timestamp(nullable=True)


class InvoiceSeries(FinancialTable, table=True):
    """The last number taken in a series. Taking the next one updates this row, so concurrent
    invoices of a series wait for each other's commit: numbers are unique and gap-free (a
    rolled-back invoice gives its number back)."""

    __tablename__ = "invoice_series"
    __table_args__ = (CheckConstraint("last_number >= 0", name="invoice_series_last_number"),)

    series: str = Field(primary_key=True, max_length=3)
    last_number: int


# --- suppliers, accounts payable and receivable (ADR 0013; migration 0002) --------------------

CATEGORIES = "'income', 'expense'"


class Supplier(FinancialTable, table=True):
    """A company accounts payable are owed to: its CNPJ as digits, unique."""

    __tablename__ = "suppliers"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'inactive')", name="suppliers_status_valid"),
        Index("ix_suppliers_name", "name"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=255)
    cnpj: str = Field(max_length=14, unique=True)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=21)
    status: str = Field(max_length=10)  # domain.SupplierStatus
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = Field(default=1)


class AccountPayable(FinancialTable, table=True):
    __tablename__ = "accounts_payable"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'paid', 'overdue', 'cancelled')",
            name="accounts_payable_status_valid",
        ),
        CheckConstraint(f"category IN ({CATEGORIES})", name="accounts_payable_category_valid"),
        CheckConstraint("amount > 0", name="accounts_payable_amount_positive"),
        CheckConstraint(
            "payment_terms_days BETWEEN 0 AND 365", name="accounts_payable_terms_valid"
        ),
        Index("ix_accounts_payable_status_due_date", "status", "due_date"),
        Index("ix_accounts_payable_supplier_id", "supplier_id"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    supplier_id: UUID = Field(foreign_key="suppliers.id")
    description: str = Field(max_length=255)
    category: str = Field(max_length=10)  # domain.AccountCategory
    amount: str = Field(sa_column=Column(Amount(), nullable=False))
    currency: str = Field(max_length=3)
    issue_date: date = Field(sa_column=Column(Date(), nullable=False))
    payment_terms_days: int
    due_date: date = Field(sa_column=Column(Date(), nullable=False))
    status: str = Field(max_length=10)  # domain.PayableStatus
    paid_at: datetime | None = utc_timestamp(nullable=True)
    cancelled_at: datetime | None = utc_timestamp(nullable=True)
    cancellation_reason: str | None = Field(default=None, max_length=255)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = Field(default=1)


class AccountReceivable(FinancialTable, table=True):
    """Money a customer owes: an order's (one per order, following its payment) or a manual one.
    The customer is sales' id, and the name as given (financial keeps no customers)."""

    __tablename__ = "accounts_receivable"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'received', 'overdue', 'cancelled')",
            name="accounts_receivable_status_valid",
        ),
        CheckConstraint(f"category IN ({CATEGORIES})", name="accounts_receivable_category_valid"),
        CheckConstraint("amount > 0", name="accounts_receivable_amount_positive"),
        CheckConstraint(
            "payment_terms_days BETWEEN 0 AND 365", name="accounts_receivable_terms_valid"
        ),
        Index("ix_accounts_receivable_status_due_date", "status", "due_date"),
        Index("ix_accounts_receivable_customer_id", "customer_id"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    customer_id: UUID
    customer_name: str | None = Field(default=None, max_length=255)
    order_id: UUID | None = Field(default=None, unique=True)
    order_number: str | None = Field(default=None, max_length=20)
    description: str = Field(max_length=255)
    category: str = Field(max_length=10)  # domain.AccountCategory
    amount: str = Field(sa_column=Column(Amount(), nullable=False))
    currency: str = Field(max_length=3)
    issue_date: date = Field(sa_column=Column(Date(), nullable=False))
    payment_terms_days: int
    due_date: date = Field(sa_column=Column(Date(), nullable=False))
    status: str = Field(max_length=10)  # domain.ReceivableStatus
    received_at: datetime | None = utc_timestamp(nullable=True)
    cancelled_at: datetime | None = utc_timestamp(nullable=True)
    cancellation_reason: str | None = Field(default=None, max_length=255)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = Field(default=1)

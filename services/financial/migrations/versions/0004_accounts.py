"""Suppliers and accounts payable and receivable (ADR 0013).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CATEGORIES = "category IN ('income', 'expense')"
_TERMS = "payment_terms_days BETWEEN 0 AND 365"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _account_columns() -> list[sa.Column[object]]:
    """What both kinds of account hold after their counterparty."""
    return [
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("category", sa.String(10), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
    ]


def _closing_columns() -> list[sa.Column[object]]:
    return [
        _timestamp("cancelled_at", nullable=True),
        sa.Column("cancellation_reason", sa.String(255), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "suppliers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cnpj", sa.String(14), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone", sa.String(21), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("cnpj", name="suppliers_cnpj_key"),
        sa.CheckConstraint("status IN ('active', 'inactive')", name="suppliers_status_valid"),
    )
    op.create_index("ix_suppliers_name", "suppliers", ["name"])
    op.create_table(
        "accounts_payable",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("supplier_id", sa.Uuid(), sa.ForeignKey("suppliers.id"), nullable=False),
        *_account_columns(),
        _timestamp("paid_at", nullable=True),
        *_closing_columns(),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'overdue', 'cancelled')",
            name="accounts_payable_status_valid",
        ),
        sa.CheckConstraint(_CATEGORIES, name="accounts_payable_category_valid"),
        sa.CheckConstraint("amount > 0", name="accounts_payable_amount_positive"),
        sa.CheckConstraint(_TERMS, name="accounts_payable_terms_valid"),
    )
    op.create_index(
        "ix_accounts_payable_status_due_date", "accounts_payable", ["status", "due_date"]
    )
    op.create_index("ix_accounts_payable_supplier_id", "accounts_payable", ["supplier_id"])
    op.create_table(
        "accounts_receivable",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("customer_name", sa.String(255), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("order_number", sa.String(20), nullable=True),
        *_account_columns(),
        _timestamp("received_at", nullable=True),
        *_closing_columns(),
        sa.UniqueConstraint("order_id", name="accounts_receivable_order_id_key"),
        sa.CheckConstraint(
            "status IN ('pending', 'received', 'overdue', 'cancelled')",
            name="accounts_receivable_status_valid",
        ),
        sa.CheckConstraint(_CATEGORIES, name="accounts_receivable_category_valid"),
        sa.CheckConstraint("amount > 0", name="accounts_receivable_amount_positive"),
        sa.CheckConstraint(_TERMS, name="accounts_receivable_terms_valid"),
    )
    op.create_index(
        "ix_accounts_receivable_status_due_date", "accounts_receivable", ["status", "due_date"]
    )
    op.create_index("ix_accounts_receivable_customer_id", "accounts_receivable", ["customer_id"])


def downgrade() -> None:
    op.drop_table("accounts_receivable")
    op.drop_table("accounts_payable")
    op.drop_table("suppliers")
